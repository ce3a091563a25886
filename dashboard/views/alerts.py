"""Alerts across every deployment the user can see, and acknowledging or resolving one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dashboard.access import OPERATE, get_alert_for
from dashboard.forms import AlertStatusForm
from dashboard.views.common import redirect_back, report
from monitoring import selectors, services
from monitoring.alert_actions import next_actions
from monitoring.models import Team

ALERTS_PAGE_SIZE = 50


@login_required
def alert_list(request: HttpRequest) -> HttpResponse:
    show = request.GET.get("show", "unresolved")
    alerts = selectors.alerts_for(user=request.user, unresolved_only=show != "all")
    slug = request.GET.get("deployment", "")
    if slug:
        alerts = alerts.filter(deployment__slug=slug)
    page = Paginator(alerts, ALERTS_PAGE_SIZE).get_page(request.GET.get("page"))
    deployments = {alert.deployment for alert in page.object_list}
    # One query for the teams the user operates in, not a role lookup per deployment on the page.
    operating = {team.pk for team in selectors.teams_where(user=request.user, need=OPERATE)}
    operable = {d.pk for d in deployments if d.team_id in operating}
    for alert in page.object_list:
        alert.next_actions = next_actions(alert)
    teams = Team.objects.all() if request.user.is_superuser else Team.objects.filter(memberships__user=request.user)
    context = {"page": page, "show": show, "slug": slug, "operable": operable, "teams": teams.order_by("name")}
    return render(request, "alerts/list.html", context)


@login_required
@require_POST
def alert_set_status(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_alert_for(request.user, alert_id, need=OPERATE)
    form = AlertStatusForm(request.POST)
    fallback = reverse("deployment", args=[alert.deployment.slug]) + "#alerts"
    if not form.is_valid():
        messages.error(request, "An alert can be acknowledged or resolved.")
        return redirect_back(request, fallback)
    try:
        services.alert_set_status(alert=alert, status=form.cleaned_data["status"], by=request.user)
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Alert “{alert.title}” is {alert.get_status_display().lower()}.")
    return redirect_back(request, fallback)
