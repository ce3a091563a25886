"""The landing page: every deployment the user can see, at a glance; sorted and filtered by the URL."""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import charts
from dashboard.access import OPERATE
from monitoring import selectors
from monitoring.selectors import Health

HEALTH_ORDER = [Health.CRITICAL, Health.WARNING, Health.UNKNOWN, Health.OK]  # worst first: triage order


def _accuracy(row: selectors.OverviewRow) -> float:
    value = row.summary.latest_metrics.get("accuracy")
    return -1.0 if value is None else float(value)  # no figure sorts below every figure


# ?sort= keys; a leading "-" reverses. Each sorts ties by name, so the order is stable.
SORTS = {
    "health": ("Health", lambda r: HEALTH_ORDER.index(r.summary.health)),
    "name": ("Deployment", lambda r: r.summary.deployment.name.lower()),
    "accuracy": ("Accuracy", _accuracy),
    "predictions": ("Predictions 24 h", lambda r: r.summary.predictions_24h),
    "alerts": ("Open alerts", lambda r: r.summary.open_alerts),
    "candidates": ("Candidates", lambda r: r.summary.candidates),
}
DEFAULT_SORT = "health"
# Rows per page: the sort and the totals cover every deployment; sparklines are read and drawn for one page only.
OVERVIEW_PAGE_SIZE = 50


@dataclass(frozen=True)
class Line:
    row: selectors.OverviewRow
    spark_points: str
    spark_floor: float | None


def _matches(row: selectors.OverviewRow, text: str, health: str) -> bool:
    deployment = row.summary.deployment
    if health and row.summary.health != health:
        return False
    haystack = f"{deployment.name} {deployment.slug} {deployment.team.name} {deployment.description}".lower()
    return all(word in haystack for word in text.lower().split())


def _sorted(rows: list[selectors.OverviewRow], sort: str) -> list[selectors.OverviewRow]:
    key = SORTS[sort.lstrip("-")][1]
    by_name = sorted(rows, key=lambda r: r.summary.deployment.name.lower())
    return sorted(by_name, key=key, reverse=sort.startswith("-"))


def _line(row: selectors.OverviewRow) -> Line:
    floor = row.summary.deployment.metric_thresholds.get("accuracy")
    points, floor_y = charts.sparkline_points([v for _, v in row.sparkline], floor=floor)
    return Line(row, points, floor_y)


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    rows = selectors.deployment_overview(user=request.user, sparklines=False)
    text = request.GET.get("q", "").strip()[:100]
    health = request.GET.get("health", "")
    health = health if health in HEALTH_ORDER else ""
    sort = request.GET.get("sort", DEFAULT_SORT)
    sort = sort if sort.lstrip("-") in SORTS else DEFAULT_SORT
    shown = _sorted([r for r in rows if _matches(r, text, health)], sort)
    page = Paginator(shown, OVERVIEW_PAGE_SIZE).get_page(request.GET.get("page"))
    sparklines = selectors.overview_sparklines(deployments=[r.summary.deployment for r in page.object_list])
    on_page = [
        replace(r, sparkline_source=source, sparkline=points)
        for r in page.object_list
        for source, points in [sparklines.get(r.summary.deployment.pk, ("", []))]
    ]
    summaries = [r.summary for r in rows]
    keep = {k: v for k, v in (("q", text), ("health", health)) if v}
    headers = [
        # Clicking the column sorted by reverses it; any other column sorts by it.
        (key, label, urlencode(keep | {"sort": f"-{key}" if sort == key else key}), sort.lstrip("-") == key)
        for key, (label, _) in SORTS.items()
    ]
    context = {
        "summaries": summaries,
        "lines": [_line(r) for r in on_page],
        "page": page,
        # The pager's links keep the filter and the sort.
        "page_query": urlencode(keep | {"sort": sort}),
        "filter_text": text,
        "filter_health": health,
        "health_choices": HEALTH_ORDER,
        "sort": sort,
        "sort_headers": {key: (label, query, active) for key, label, query, active in headers},
        "sparkline_days": selectors.SPARKLINE_DAYS,
        # The "new deployment" button and empty state only for someone the create page would let through.
        "can_create": bool(selectors.teams_where(user=request.user, need=OPERATE)),
        "totals": {
            "deployments": len(summaries),
            "critical": sum(s.health == Health.CRITICAL for s in summaries),
            "open_alerts": sum(s.open_alerts for s in summaries),
            "candidates": sum(s.candidates for s in summaries),
            "predictions_24h": sum(s.predictions_24h for s in summaries),
        },
    }
    return render(request, "dashboard/overview.html", context)
