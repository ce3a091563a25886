"""The landing page: every deployment the user can see, at a glance."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.access import OPERATE
from monitoring import selectors


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    summaries = [
        selectors.deployment_summary(deployment=d) for d in selectors.deployments_visible_to(user=request.user)
    ]
    context = {
        "summaries": summaries,
        # The "new deployment" button and empty state only for someone the create page would let through.
        "can_create": bool(selectors.teams_where(user=request.user, need=OPERATE)),
        "totals": {
            "deployments": len(summaries),
            "critical": sum(s.health == selectors.Health.CRITICAL for s in summaries),
            "open_alerts": sum(s.open_alerts for s in summaries),
            "candidates": sum(s.candidates for s in summaries),
            "predictions_24h": sum(s.predictions_24h for s in summaries),
        },
    }
    return render(request, "dashboard/overview.html", context)
