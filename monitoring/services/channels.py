"""Where a team's alerts go: notification channels, routing rules and silences. Each write is audited.

A channel's URL is checked here (monitoring/netsafety.py) when it is saved, and again by the sender before
each delivery. A webhook's signing secret is made here, sealed (monitoring/sealing.py), and returned once.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring import netsafety
from monitoring.models import Alert, Deployment, NotificationChannel, RoutingRule, Silence, Team
from monitoring.sealing import seal
from monitoring.services.audit import audit_record
from monitoring.services.errors import Conflict, ValidationFailed

Kind = NotificationChannel.Kind

# Apprise schemes whose host the user chooses (generic JSON/XML/form posts): checked like a webhook's. The other
# schemes name a fixed service (discord://, msteams://, tgram://, pagerduty://) that Apprise calls on its own host.
APPRISE_USER_HOST_SCHEMES = {"json", "jsons", "xml", "xmls", "form", "forms"}
MAX_EMAIL_RECIPIENTS = 20
# Group intervals: 0 s (send at once, the bench) up to a day; repeats from 1 minute up to a week.
MAX_GROUP_SECONDS = 24 * 3600
MAX_REPEAT_SECONDS = 7 * 24 * 3600


def _refuse(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"field": field, "message": message}])


def _check_url(url: str, *, field: str = "target") -> str:
    try:
        return netsafety.check_url(url, allow_private=settings.ALERT_ALLOW_PRIVATE_URLS).url
    except netsafety.UnsafeURL as exc:
        raise _refuse(field, str(exc)) from None


def _check_apprise(url: str) -> str:
    import apprise  # imported here: 0.3 s of plugins that only this check and the sender need

    url = url.strip()
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise _refuse("target", "An Apprise URL starts with its service, e.g. discord://webhook_id/token.")
    if scheme in {"http", "https"}:
        raise _refuse("target", "For a plain HTTP endpoint use a webhook channel (signed), or Apprise's json:// form.")
    if apprise.Apprise.instantiate(url) is None:
        raise _refuse("target", f"Apprise does not understand this URL (service {scheme!r}); see its wiki for the format.")
    if scheme in APPRISE_USER_HOST_SCHEMES:
        host = urlsplit(url).hostname or ""
        try:
            netsafety.check_host(host, 443, allow_private=settings.ALERT_ALLOW_PRIVATE_URLS)
        except netsafety.UnsafeURL as exc:
            raise _refuse("target", str(exc)) from None
    return url


def _recipients(target: str) -> list[str]:
    addresses = [a.strip() for a in target.replace(";", ",").split(",") if a.strip()]
    if not addresses:
        raise _refuse("target", "An email channel needs at least one address.")
    if len(addresses) > MAX_EMAIL_RECIPIENTS:
        raise _refuse("target", f"An email channel sends to at most {MAX_EMAIL_RECIPIENTS} addresses.")
    for address in addresses:
        try:
            validate_email(address)
        except DjangoValidationError:
            raise _refuse("target", f"{address!r} is not an email address.") from None
    return addresses


def _target_fields(kind: str, target: str) -> tuple[dict[str, Any], str | None]:
    """(config, the secret to seal or None) for a channel's target as typed."""
    if kind == Kind.EMAIL:
        return {"to": _recipients(target)}, None
    if kind == Kind.WEBHOOK:
        return {"url": _check_url(target)}, None
    if kind == Kind.SLACK:
        url = _check_url(target)
        return {"display": urlsplit(url).hostname or ""}, url
    if kind == Kind.APPRISE:
        url = _check_apprise(target)
        return {"display": f"{urlsplit(url).scheme}://…"}, url
    raise _refuse("kind", f"Unknown channel kind {kind!r}; choose one of {Kind.values}.")


def _new_signing_secret() -> str:
    # Standard Webhooks: "whsec_" and base64 of 24 to 64 random bytes; 32 here.
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _channel_state(channel: NotificationChannel) -> dict[str, Any]:
    return {"name": channel.name, "kind": channel.kind, "target": channel.target_display, "enabled": channel.enabled}


@transaction.atomic
def channel_create(
    *, team: Team, kind: str, name: str, target: str, by: AbstractBaseUser
) -> tuple[NotificationChannel, str | None]:
    """A channel, and the webhook signing secret (returned this once, stored sealed); None for other kinds."""
    name = name.strip()
    if not name or len(name) > 100:
        raise _refuse("name", "A channel needs a name of at most 100 characters.")
    config, sealed_target = _target_fields(kind, target)
    signing_secret = _new_signing_secret() if kind == Kind.WEBHOOK else None
    secret = signing_secret or sealed_target
    try:
        with transaction.atomic():
            channel = NotificationChannel.objects.create(
                team=team, kind=kind, name=name, config=config, secret_sealed=seal(secret) if secret else "",
                created_by=by,
            )
    except IntegrityError:
        raise Conflict(f"The team already has a channel named {name!r}.") from None
    audit_record(action="channel.create", actor=by, obj=channel, after=_channel_state(channel) | {"team": team.slug})
    return channel, signing_secret


@transaction.atomic
def channel_update(
    *, channel: NotificationChannel, name: str, target: str = "", enabled: bool, by: AbstractBaseUser
) -> NotificationChannel:
    """Rename, re-target (an empty target keeps the current one) or enable/disable. Enabling a channel that was
    disabled for failures starts its failure count again."""
    channel = NotificationChannel.objects.select_for_update().get(pk=channel.pk)
    before = _channel_state(channel)
    name = name.strip()
    if not name or len(name) > 100:
        raise _refuse("name", "A channel needs a name of at most 100 characters.")
    if target.strip():
        config, sealed_target = _target_fields(channel.kind, target)
        channel.config = config
        if sealed_target is not None:
            channel.secret_sealed = seal(sealed_target)
    if enabled and not channel.enabled:
        channel.consecutive_failures, channel.disabled_reason = 0, ""
    channel.name, channel.enabled = name, enabled
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError:
        raise Conflict(f"The team already has a channel named {name!r}.") from None
    audit_record(action="channel.update", actor=by, obj=channel, before=before, after=_channel_state(channel))
    return channel


@transaction.atomic
def channel_delete(*, channel: NotificationChannel, by: AbstractBaseUser) -> None:
    """Delete a channel with its notifications and attempts (the audit log keeps that it existed)."""
    audit_record(action="channel.delete", actor=by, obj=channel, before=_channel_state(channel))
    channel.delete()


def _seconds(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise _refuse(field, f"{field} must be between {low} and {high} seconds.")
    return value


def _rule_fields(
    *, team: Team, name: str, channels: list[NotificationChannel], deployment: Deployment | None, min_severity: str,
    kinds: list[str] | None, group_wait_s: int, group_interval_s: int, repeat_interval_s: int,
) -> dict[str, Any]:
    """A rule's fields, checked; raises ValidationFailed naming the field at fault."""
    name = name.strip()
    if not name or len(name) > 100:
        raise _refuse("name", "A rule needs a name of at most 100 characters.")
    if not channels:
        raise _refuse("channels", "A rule sends to at least one channel.")
    if any(channel.team_id != team.pk for channel in channels):
        raise _refuse("channels", "A rule sends only to its own team's channels.")
    if deployment is not None and deployment.team_id != team.pk:
        raise _refuse("deployment", "A rule covers only its own team's deployments.")
    if min_severity not in Alert.Severity.values:
        raise _refuse("min_severity", f"Choose a severity among {Alert.Severity.values}.")
    kinds = sorted(set(kinds or []))
    unknown = [k for k in kinds if k not in Alert.Kind.values]
    if unknown:
        raise _refuse("kinds", f"Unknown alert kind(s) {unknown}; choose among {Alert.Kind.values}.")
    return {
        "name": name, "deployment": deployment, "min_severity": min_severity, "kinds": kinds,
        "group_wait_s": _seconds("group_wait_s", group_wait_s, 0, MAX_GROUP_SECONDS),
        "group_interval_s": _seconds("group_interval_s", group_interval_s, 0, MAX_GROUP_SECONDS),
        "repeat_interval_s": _seconds("repeat_interval_s", repeat_interval_s, 60, MAX_REPEAT_SECONDS),
    }


def _rule_state(rule: RoutingRule) -> dict[str, Any]:
    return {
        "team": rule.team.slug, "name": rule.name, "deployment": rule.deployment.slug if rule.deployment else None,
        "min_severity": rule.min_severity, "kinds": rule.kinds, "channels": sorted(c.name for c in rule.channels.all()),
        "group_wait_s": rule.group_wait_s, "group_interval_s": rule.group_interval_s,
        "repeat_interval_s": rule.repeat_interval_s,
    }


@transaction.atomic
def routing_rule_create(
    *,
    team: Team,
    name: str,
    channels: list[NotificationChannel],
    deployment: Deployment | None = None,
    min_severity: str = Alert.Severity.WARNING,
    kinds: list[str] | None = None,
    group_wait_s: int = 30,
    group_interval_s: int = 300,
    repeat_interval_s: int = 4 * 3600,
    by: AbstractBaseUser,
) -> RoutingRule:
    fields = _rule_fields(
        team=team, name=name, channels=channels, deployment=deployment, min_severity=min_severity, kinds=kinds,
        group_wait_s=group_wait_s, group_interval_s=group_interval_s, repeat_interval_s=repeat_interval_s,
    )
    rule = RoutingRule.objects.create(team=team, created_by=by, **fields)
    rule.channels.set(channels)
    audit_record(action="routing_rule.create", actor=by, obj=rule, after=_rule_state(rule))
    return rule


@transaction.atomic
def routing_rule_update(
    *,
    rule: RoutingRule,
    name: str,
    channels: list[NotificationChannel],
    deployment: Deployment | None,
    min_severity: str,
    kinds: list[str] | None,
    group_wait_s: int,
    group_interval_s: int,
    repeat_interval_s: int,
    by: AbstractBaseUser,
) -> RoutingRule:
    """Replace a rule's matchers, channels and intervals (audited, before and after). Alerts route by it from
    the next change on; its open groups keep their alerts and use the new intervals and channels when next due."""
    rule = RoutingRule.objects.select_for_update(of=("self",)).select_related("team", "deployment").get(pk=rule.pk)
    fields = _rule_fields(
        team=rule.team, name=name, channels=channels, deployment=deployment, min_severity=min_severity, kinds=kinds,
        group_wait_s=group_wait_s, group_interval_s=group_interval_s, repeat_interval_s=repeat_interval_s,
    )
    before = _rule_state(rule)
    for attr, value in fields.items():
        setattr(rule, attr, value)
    rule.save()
    rule.channels.set(channels)
    after = _rule_state(rule)
    if after != before:
        audit_record(action="routing_rule.update", actor=by, obj=rule, before=before, after=after)
    return rule


@transaction.atomic
def routing_rule_delete(*, rule: RoutingRule, by: AbstractBaseUser) -> None:
    audit_record(action="routing_rule.delete", actor=by, obj=rule, before={"team": rule.team.slug, "name": rule.name})
    rule.delete()


@transaction.atomic
def silence_create(
    *,
    team: Team,
    ends_at: datetime,
    comment: str,
    deployment: Deployment | None = None,
    kind: str = "",
    severity: str = "",
    by: AbstractBaseUser,
) -> Silence:
    now = timezone.now()
    if ends_at <= now:
        raise _refuse("ends_at", "A silence must end in the future.")
    if not comment.strip():
        raise _refuse("comment", "Say why the alerts are silenced (the comment is shown on them).")
    if deployment is not None and deployment.team_id != team.pk:
        raise _refuse("deployment", "A silence covers only its own team's deployments.")
    if kind and kind not in Alert.Kind.values:
        raise _refuse("kind", f"Unknown alert kind {kind!r}.")
    if severity and severity not in Alert.Severity.values:
        raise _refuse("severity", f"Unknown severity {severity!r}.")
    silence = Silence.objects.create(
        team=team, deployment=deployment, kind=kind, severity=severity, starts_at=now, ends_at=ends_at,
        author=by, comment=comment.strip(),
    )
    audit_record(
        action="silence.create", actor=by, deployment=deployment, obj=silence,
        after={"team": team.slug, "deployment": deployment.slug if deployment else None, "kind": kind,
               "severity": severity, "ends_at": ends_at.isoformat(), "comment": silence.comment},
    )
    return silence


@transaction.atomic
def silence_expire(*, silence: Silence, by: AbstractBaseUser) -> Silence:
    """End a silence now (kept, for the record); an ended one is left as it is."""
    now = timezone.now()
    if silence.ends_at > now:
        before = {"ends_at": silence.ends_at.isoformat()}
        silence.ends_at = now
        silence.save(update_fields=["ends_at"])
        audit_record(action="silence.expire", actor=by, deployment=silence.deployment, obj=silence, before=before,
                     after={"ends_at": now.isoformat()})
    return silence
