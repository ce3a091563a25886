"""Where a team's alerts go: its channels (with their last deliveries and a Send test button), routing rules and
silences; an alert's page with its notifications; and the acknowledge link from a notification.

Viewers of the team read all of it; approvers manage it (dashboard/access.py, MANAGE_ALERTING).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.access import (
    MANAGE_ALERTING,
    OPERATE,
    VIEW,
    can,
    get_alert_for,
    get_alert_group_for,
    get_channel_for,
    get_rule_for,
    get_silence_for,
    get_team_for,
)
from dashboard.forms import ChannelForm, RuleForm, SilenceForm
from dashboard.views.common import report
from monitoring import selectors, services
from monitoring.ack_links import AckLinkExpired, AckLinkInvalid, ack_token_group_id
from monitoring.models import Team
from monitoring.selectors import role_allows, team_role_for


def _page_url(team_slug: str, anchor: str = "") -> str:
    return reverse("team-alerting", args=[team_slug]) + (f"#{anchor}" if anchor else "")


def _can_manage(request: HttpRequest, team: Team) -> bool:
    return role_allows(team_role_for(user=request.user, team_id=team.pk), MANAGE_ALERTING)


@login_required
def team_alerting(request: HttpRequest, team: str) -> HttpResponse:
    team_obj = get_team_for(request.user, team, need=VIEW)
    channels = list(selectors.channels_for(team=team_obj))
    rules = list(selectors.rules_for(team=team_obj))
    context = {
        "team": team_obj,
        "channels": channels,
        "rules": rules,
        "silences": list(selectors.silences_for_team(team=team_obj)),
        "can_manage": _can_manage(request, team_obj),
        "channel_form": ChannelForm(),
        "rule_form": RuleForm(team=team_obj),
        "weekly_digest": selectors.digest_wanted(user=request.user),
        "silence_form": SilenceForm(team=team_obj),
    }
    return render(request, "alerting/team.html", context)


@never_cache  # a webhook's response carries the only copy of its signing secret
@login_required
@require_POST
def channel_create(request: HttpRequest, team: str) -> HttpResponse:
    team_obj = get_team_for(request.user, team, need=MANAGE_ALERTING)
    form = ChannelForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A channel needs a kind, a name and where to send.")
        return redirect(_page_url(team, "channels"))
    try:
        channel, secret = services.channel_create(
            team=team_obj, kind=form.cleaned_data["kind"], name=form.cleaned_data["name"],
            target=form.cleaned_data["target"], by=request.user,
        )
    except services.ServiceError as exc:
        report(request, exc)
        return redirect(_page_url(team, "channels"))
    messages.success(request, f"Channel “{channel.name}” added. Send a test to check it.")
    if secret is None:
        return redirect("channel-detail", team=team, channel_id=channel.pk)
    # Rendered, not redirected: the secret is stored only sealed, never in the session.
    return render(request, "alerting/channel_created.html", {"team": team_obj, "channel": channel, "secret": secret})


@login_required
def channel_detail(request: HttpRequest, team: str, channel_id: int) -> HttpResponse:
    channel = get_channel_for(request.user, team, channel_id, need=VIEW)
    form = ChannelForm(initial={"kind": channel.kind, "name": channel.name, "enabled": channel.enabled})
    context = {
        "team": channel.team, "channel": channel, "form": form,
        "deliveries": selectors.channel_deliveries(channel=channel),
        "can_manage": _can_manage(request, channel.team),
    }
    return render(request, "alerting/channel.html", context)


@login_required
@require_POST
def channel_update(request: HttpRequest, team: str, channel_id: int) -> HttpResponse:
    channel = get_channel_for(request.user, team, channel_id, need=MANAGE_ALERTING)
    form = ChannelForm(request.POST | {"kind": channel.kind})
    if not form.is_valid():
        messages.error(request, "A channel needs a name of at most 100 characters.")
    else:
        try:
            services.channel_update(
                channel=channel, name=form.cleaned_data["name"], target=form.cleaned_data["target"],
                enabled=form.cleaned_data["enabled"], by=request.user,
            )
        except services.ServiceError as exc:
            report(request, exc)
        else:
            messages.success(request, "Channel saved.")
    return redirect("channel-detail", team=team, channel_id=channel.pk)


@login_required
@require_POST
def channel_delete(request: HttpRequest, team: str, channel_id: int) -> HttpResponse:
    channel = get_channel_for(request.user, team, channel_id, need=MANAGE_ALERTING)
    services.channel_delete(channel=channel, by=request.user)
    messages.success(request, f"Channel “{channel.name}” deleted.")
    return redirect(_page_url(team, "channels"))


@login_required
@require_POST
def channel_test(request: HttpRequest, team: str, channel_id: int) -> HttpResponse:
    channel = get_channel_for(request.user, team, channel_id, need=MANAGE_ALERTING)
    services.channel_test(channel=channel, by=request.user)
    messages.success(request, "Test notification queued; its attempts appear below (reload in a moment).")
    return redirect("channel-detail", team=team, channel_id=channel.pk)


@login_required
@require_POST
def rule_create(request: HttpRequest, team: str) -> HttpResponse:
    team_obj = get_team_for(request.user, team, need=MANAGE_ALERTING)
    form = RuleForm(request.POST, team=team_obj)
    if not form.is_valid():
        problems = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
        messages.error(request, f"The rule is not valid: {problems}")
        return redirect(_page_url(team, "rules"))
    data = form.cleaned_data
    try:
        services.routing_rule_create(
            team=team_obj, name=data["name"], deployment=data["deployment"], min_severity=data["min_severity"],
            kinds=list(data["kinds"]), channels=list(data["channels"]), group_wait_s=data["group_wait_s"],
            group_interval_s=data["group_interval_s"], repeat_interval_s=data["repeat_interval_s"], by=request.user,
        )
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Routing rule “{data['name']}” added.")
    return redirect(_page_url(team, "rules"))


@login_required
@require_POST
def digest_preference(request: HttpRequest, team: str) -> HttpResponse:
    """Any member sets their own weekly digest (it goes to every team they are in)."""
    get_team_for(request.user, team, need=VIEW)
    wanted = request.POST.get("weekly_digest") == "on"
    services.digest_preference_set(user=request.user, weekly_digest=wanted)
    if wanted and not request.user.email:
        messages.warning(request, "Weekly digest on, but your account has no email address: ask an admin to add one.")
    else:
        messages.success(request, "You will get the weekly digest on Mondays." if wanted else "Weekly digest off.")
    return redirect(_page_url(team, "digest"))


def _rule_initial(rule) -> dict:
    return {
        "name": rule.name, "deployment": rule.deployment, "min_severity": rule.min_severity, "kinds": rule.kinds,
        "channels": list(rule.channels.all()), "group_wait_s": rule.group_wait_s,
        "group_interval_s": rule.group_interval_s, "repeat_interval_s": rule.repeat_interval_s,
    }


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, team: str, rule_id: int) -> HttpResponse:
    """The rule's form, filled in (approvers); saving replaces its matchers, channels and intervals."""
    rule = get_rule_for(request.user, team, rule_id, need=MANAGE_ALERTING)
    if request.method == "GET":
        form = RuleForm(initial=_rule_initial(rule), team=rule.team)
        return render(request, "alerting/rule_edit.html", {"team": rule.team, "rule": rule, "form": form})
    form = RuleForm(request.POST, team=rule.team)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.routing_rule_update(
                rule=rule, name=data["name"], deployment=data["deployment"], min_severity=data["min_severity"],
                kinds=list(data["kinds"]), channels=list(data["channels"]), group_wait_s=data["group_wait_s"],
                group_interval_s=data["group_interval_s"], repeat_interval_s=data["repeat_interval_s"], by=request.user,
            )
        except services.ServiceError as exc:
            form.add_error(None, exc.message)
            status = exc.status
        else:
            messages.success(request, f"Routing rule “{data['name']}” saved.")
            return redirect(_page_url(team, "rules"))
    else:
        status = 400
    return render(request, "alerting/rule_edit.html", {"team": rule.team, "rule": rule, "form": form}, status=status)


@login_required
@require_POST
def rule_delete(request: HttpRequest, team: str, rule_id: int) -> HttpResponse:
    rule = get_rule_for(request.user, team, rule_id, need=MANAGE_ALERTING)
    services.routing_rule_delete(rule=rule, by=request.user)
    messages.success(request, f"Routing rule “{rule.name}” deleted.")
    return redirect(_page_url(team, "rules"))


@login_required
@require_POST
def silence_create(request: HttpRequest, team: str) -> HttpResponse:
    team_obj = get_team_for(request.user, team, need=MANAGE_ALERTING)
    form = SilenceForm(request.POST, team=team_obj)
    if not form.is_valid():
        problems = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
        messages.error(request, f"The silence is not valid: {problems}")
        return redirect(_page_url(team, "silences"))
    data = form.cleaned_data
    try:
        services.silence_create(
            team=team_obj, deployment=data["deployment"], kind=data["kind"], severity=data["severity"],
            ends_at=timezone.now() + timedelta(hours=data["hours"]), comment=data["comment"], by=request.user,
        )
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Silenced for {data['hours']} h.")
    return redirect(_page_url(team, "silences"))


@login_required
@require_POST
def silence_expire(request: HttpRequest, team: str, silence_id: int) -> HttpResponse:
    silence = get_silence_for(request.user, team, silence_id, need=MANAGE_ALERTING)
    services.silence_expire(silence=silence, by=request.user)
    messages.success(request, "Silence ended.")
    return redirect(_page_url(team, "silences"))


@login_required
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_alert_for(request.user, alert_id, need=VIEW)
    rules = list(selectors.rules_for(team=alert.deployment.team))
    context = {
        "alert": alert,
        "team": alert.deployment.team,
        "groups": selectors.alert_groups_of(alert=alert),
        "notifications": selectors.alert_notifications(alert=alert),
        "silences": selectors.active_silences_matching(alert=alert),
        "routed": any(rule.matches(alert) for rule in rules),
        "has_rules": bool(rules),
        "can_operate": can(request.user, alert.deployment, OPERATE),
        # The version the alert is about (the one that scored below a floor, the one a failed job started from).
        "version_number": (alert.figures or {}).get("version"),
    }
    return render(request, "alerts/detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def alert_ack(request: HttpRequest, ack: str) -> HttpResponse:
    """GET: what the link would acknowledge (changes nothing). POST: acknowledge it, as the logged-in user."""
    try:
        group_id = ack_token_group_id(ack)
    except (AckLinkExpired, AckLinkInvalid) as exc:
        status = 410 if isinstance(exc, AckLinkExpired) else 400
        return render(request, "alerting/ack.html", {"problem": str(exc)}, status=status)
    group = get_alert_group_for(request.user, group_id, need=OPERATE)
    result = None
    if request.method == "POST":
        result = services.alert_group_acknowledge(group=group, by=request.user)
        group = result.group
    context = {
        "group": group, "alerts": list(group.alerts.order_by("created_at")), "result": result, "ack": ack,
    }
    return render(request, "alerting/ack.html", context)
