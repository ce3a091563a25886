"""A deployment's pages: its health page and its drift reports, the list and one report (its audit log: views/audit.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from dashboard import charts
from dashboard.access import APPROVE, OPERATE, can, get_deployment_for
from dashboard.forms import JobForm, TokenForm
from dashboard.timerange import PRESET_DAYS, REFRESH_CHOICES, RangeError, TimeRange, parse_time_range
from dashboard.views.common import version_url
from monitoring import selectors, services
from monitoring.alert_actions import next_actions
from monitoring.models import Deployment, EvaluationRun, ModelVersion

QUALITY_METRICS = ["accuracy", "f1_macro"]
LATENCY_METRICS = list(charts.LATENCY_LABELS)
# The deployment page lists the largest statistics; the report page lists every feature.
DRIFT_ROWS_ON_PAGE = 12


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    higher_is_better: bool
    digits: int
    scale: float = 1.0  # shown as value × scale (milliseconds as microseconds)


# Compared on the evaluation set: the one sample every version is scored on.
VERSION_COLUMNS = [
    Column("accuracy", "Accuracy", True, 3),
    Column("f1_macro", "F1", True, 3),
    Column("roc_auc", "ROC-AUC", True, 3),
    # Microseconds: a small model's single-row p95 is a few hundredths of a millisecond, which two decimals of
    # ms showed as 0.01 for every version.
    Column("latency_p95_ms", "p95 µs, 1 row", False, 0, scale=1000.0),
]


@dataclass(frozen=True)
class Cell:
    value: str
    delta: str = ""
    better: bool | None = None  # None: no comparison, or no change


@dataclass(frozen=True)
class VersionLine:
    version: ModelVersion
    cells: list[Cell]
    size: Cell


def _compare(value: float | None, base: float | None, column: Column) -> Cell:
    if value is None:
        return Cell("—")
    value = value * column.scale
    base = None if base is None else base * column.scale
    text = f"{value:,.{column.digits}f}"
    if base is None:
        return Cell(text)
    delta = value - base
    if round(delta, column.digits) == 0:
        return Cell(text, f"±{0:.{column.digits}f}")
    return Cell(text, f"{delta:+.{column.digits}f}", (delta > 0) == column.higher_is_better)


def version_lines(rows: list[selectors.VersionRow]) -> list[VersionLine]:
    """Each version's numbers; candidates also show how far they are from the active version."""
    active = next((r for r in rows if r.version.status == ModelVersion.Status.ACTIVE), None)
    lines = []
    for row in rows:
        compare = active is not None and row.version.status == ModelVersion.Status.CANDIDATE
        cells = [
            _compare(row.evaluation_set.get(c.key), active.evaluation_set.get(c.key) if compare else None, c)
            for c in VERSION_COLUMNS
        ]
        size = Cell(_filesize(row.version.size_bytes))
        if compare and active.version.size_bytes:
            change = row.version.size_bytes / active.version.size_bytes - 1
            size = Cell(size.value, "±0%", None) if abs(change) < 0.005 else Cell(size.value, f"{change:+.0%}", change < 0)
        lines.append(VersionLine(row.version, cells, size))
    return lines


def _filesize(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@dataclass(frozen=True)
class ProductionWindow:
    key: str  # the ?window= value
    source: str
    days: int
    label: str


def production_windows(deployment: Deployment) -> list[ProductionWindow]:
    """The labelled production windows the health chart can draw, one at a time: the deployment's evaluation
    window (what its floors and alerts go by) first, then the last 24 hours (a drop shows there first)."""
    Source = EvaluationRun.Source
    week = deployment.evaluation_window_days
    windows = [ProductionWindow("evaluation", Source.PRODUCTION, week, f"labelled production, {week} d")]
    if week > 1:
        windows.append(ProductionWindow("day", Source.PRODUCTION_DAY, 1, "labelled production, 24 h"))
    return windows


def _chart_window(request: HttpRequest, deployment: Deployment) -> ProductionWindow:
    windows = production_windows(deployment)
    return next((w for w in windows if w.key == request.GET.get("window")), windows[0])


def _charts(deployment: Deployment, span: TimeRange, window: ProductionWindow) -> dict[str, str | None]:
    since, until, x_range = span.start, span.end, (span.start, span.end)
    tz = timezone.get_current_timezone()
    Source = EvaluationRun.Source
    # Read once for the rollout marks and every series.
    periods = selectors.serving_periods(deployment=deployment, since=since, until=until)
    rollouts = [
        (p.started, f"v{p.number}", version_url(deployment.slug, p.number)) for p in periods if p.started >= since
    ]

    def series(names: list[str], source: str, window_days: int | None = None) -> dict:
        # Each span of the range keeps its lowest and highest point: a trace stays within charts.MAX_POINTS.
        return selectors.serving_metric_series(
            deployment=deployment, names=names, source=source, since=since, until=until, window_days=window_days,
            buckets=charts.MAX_POINTS // 2, periods=periods,
        )

    drift = selectors.drift_share_series(deployment=deployment, since=since, until=until)
    # Quality and latency on the evaluation set in one read.
    evaluation_set = series(QUALITY_METRICS + LATENCY_METRICS, Source.EVALUATION_SET)
    return {
        "metrics": charts.metrics_chart(
            production=series(QUALITY_METRICS, window.source, window.days),
            production_label=window.label,
            evaluation_set={name: evaluation_set[name] for name in QUALITY_METRICS},
            thresholds=deployment.metric_thresholds,
            tz=tz,
            rollouts=rollouts,
            x_range=x_range,
        ),
        # Always the evaluation set: production windows of different sizes would time different rows.
        "latency": charts.latency_chart(
            series_by_name={name: evaluation_set[name] for name in LATENCY_METRICS}, tz=tz, rollouts=rollouts,
            x_range=x_range,
        ),
        "drift": charts.drift_share_chart(
            series=drift, tz=tz, x_range=x_range, report_urls=[_report_url(deployment, pk) for pk in drift["report"]]
        ),
    }


def _report_url(deployment: Deployment, report_id: int) -> str:
    return reverse("drift-report", args=[deployment.slug, report_id])


def _with_next_actions(alerts: list) -> list:
    for alert in alerts:
        alert.next_actions = next_actions(alert)
    return alerts


@login_required
def deployment_detail(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug)
    tz = timezone.get_current_timezone()
    range_error = ""
    try:
        span = parse_time_range(request.GET, tz=tz, now=timezone.now())
    except RangeError as exc:
        range_error = str(exc)
        span = parse_time_range({}, tz=tz, now=timezone.now())
    window = _chart_window(request, deployment)
    versions = selectors.versions_with_metrics(deployment=deployment)
    drift = selectors.latest_drift_report(deployment=deployment)
    jobs = list(selectors.jobs_for(deployment=deployment)[:10])
    live_versions = [r.version for r in versions if r.version.status != ModelVersion.Status.REJECTED]
    active = next((v for v in live_versions if v.status == ModelVersion.Status.ACTIVE), None)
    can_operate = can(request.user, deployment, OPERATE)
    context = {
        "deployment": deployment,
        "summary": (summary := selectors.deployment_summary(
            deployment=deployment, versions=[r.version for r in versions]
        )),
        "per_class": selectors.per_class_rows(metrics=summary.latest_metrics),
        "can_operate": can_operate,
        "can_approve": can(request.user, deployment, APPROVE),
        "charts": _charts(deployment, span, window),
        "range": span,
        "range_error": range_error,
        "range_inputs": span.local_input(tz),
        "presets": [
            (days, replace(span, days=days).query(tz, window=window.key), days == span.days) for days in PRESET_DAYS
        ],
        "refresh_choices": list(REFRESH_CHOICES),
        "window": window,
        "windows": [(w, span.query(tz, window=w.key)) for w in production_windows(deployment)],
        "version_columns": VERSION_COLUMNS,
        "versions": version_lines(versions),
        "fleet": (fleet := selectors.serving_fleet(deployment=deployment)),
        "served_by_version": selectors.served_by_version(deployment=deployment),
        **_rollout_context(deployment, fleet=fleet),
        "drift": drift,
        "drift_rows": drift.features[:DRIFT_ROWS_ON_PAGE] if drift else [],
        "alerts": _with_next_actions(list(selectors.alerts_for(deployment=deployment, unresolved_only=True)[:20])),
        "jobs": jobs,
        "jobs_live": any(not job.is_finished for job in jobs),
        "job_form": JobForm(versions=live_versions, initial={"version": active.number if active else None}),
        "job_kind": request.GET.get("job", ""),  # prefilled from an alert's next action
        # Which jobs fit the active version's graph and data, and why the others don't (shown before queuing).
        "job_options": selectors.job_options(version=active) if active is not None else [],
        "job_options_version": active.number if active is not None else None,
        "token_form": TokenForm(),
        # Operators only, as in the API (GET /deployments/{slug}/tokens): prefixes, owners and last use are
        # an ingestion credential's metadata, none of a viewer's business.
        "tokens": list(
            deployment.api_tokens.select_related("created_by").order_by(F("revoked_at").asc(nulls_first=True), "-created_at")
        ) if can_operate else [],
        "drift_interval": settings.DRIFT_INTERVAL_MINUTES,
        "evaluation_interval": settings.EVALUATION_INTERVAL_MINUTES,
    }
    # Bad range input is the client's to fix: say so in the status too, and still show the page.
    return render(request, "deployments/detail.html", context, status=400 if range_error else 200)


def _rollout_context(deployment, *, fleet) -> dict:
    """The live rollout (its stage, share, how many live instances serve it, latest guard checks and their chart)
    and past rollouts (issue 14)."""
    rollout = selectors.rollout_live_for(deployment=deployment)
    history = selectors.rollout_history(deployment=deployment)
    shown = rollout or (history[0] if history else None)
    return {
        "rollout": rollout,
        # The share is of instances by a stable hash (monitoring/rollout/assignment.py), so a small fleet's count
        # is near it, not on it: the card says both.
        "rollout_now": timezone.now(),  # a completed rollout's watch period shows while it lasts
        "rollout_instances": dict(fleet.by_version).get(rollout.candidate.number, 0) if rollout else 0,
        "rollout_checks": selectors.rollout_latest_checks(rollout=rollout) if rollout else [],
        "rollout_chart": charts.rollout_guards_chart(
            series=selectors.rollout_guard_series(rollout=shown), tz=timezone.get_current_timezone()
        ) if shown else None,
        "rollout_chart_of": shown,
        "rollout_history": history,
        "rollout_plan": services.rollout_plan_of(deployment),
        "rollout_interval": settings.ROLLOUT_GUARD_INTERVAL_SECONDS,
    }


# Overlaid histograms drawn on a report page: the features that moved most; the table lists every feature.
DRIFT_HISTOGRAMS_ON_PAGE = 24
# Drift-over-time chart on a report page: the checks of the last this-many days up to the report.
DRIFT_SERIES_DAYS = 30


@login_required
def drift_report(request: HttpRequest, slug: str, report_id: int) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug)
    report = get_object_or_404(deployment.drift_reports, pk=report_id)
    prediction = report.prediction_drift or {}
    tz = timezone.get_current_timezone()
    moved = [f["feature"] for f in report.features]  # stored drifted first, then by how much each moved
    series = selectors.drift_feature_series(
        deployment=deployment, since=report.window_end - timedelta(days=DRIFT_SERIES_DAYS), features=moved[: charts.MAX_SERIES_LINES]
    )
    report_ids = {pk for s in series.values() for pk in s["report"]}
    previous, following = selectors.drift_report_neighbours(report=report)
    context = {
        "deployment": deployment,
        "report": report,
        "chart": charts.drift_features_chart(features=report.features),
        "histograms": [
            (f, charts.drift_histogram_chart(feature=f)) for f in report.features[:DRIFT_HISTOGRAMS_ON_PAGE]
        ],
        "series_chart": charts.drift_feature_series_chart(
            series=series, tz=tz, features=moved, report_urls={pk: _report_url(deployment, pk) for pk in report_ids}
        ),
        "previous": previous,
        "following": following,
        "prediction_rows": list(zip(prediction.get("classes", []), prediction.get("reference", []), prediction.get("current", []))),
        "prediction": prediction,
        "multivariate": report.multivariate or {},
        "ranked": (report.multivariate or {}).get("ranked", [])[:10],
        "estimated": (report.performance or {}).get("estimated"),
        "labelled": (report.performance or {}).get("labelled"),
    }
    return render(request, "deployments/drift_report.html", context)


DRIFT_REPORTS_PAGE_SIZE = 50


@login_required
def drift_report_list(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug)
    page = Paginator(selectors.drift_reports_for(deployment=deployment), DRIFT_REPORTS_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"deployment": deployment, "page": page, "drift_interval": settings.DRIFT_INTERVAL_MINUTES}
    return render(request, "deployments/drift_reports.html", context)

