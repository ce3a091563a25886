"""The read API's lists: evaluation runs and metric points, drift reports and per-feature points, alerts and the
audit log of one deployment, filtered. Querysets, so a page or a streamed CSV reads only what it needs."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from monitoring.models import Alert, Deployment, DriftFeaturePoint, DriftReport, EvaluationRun, MetricPoint


def _between(rows: QuerySet, field: str, since: datetime | None, until: datetime | None) -> QuerySet:
    if since is not None:
        rows = rows.filter(**{f"{field}__gte": since})
    if until is not None:
        rows = rows.filter(**{f"{field}__lt": until})
    return rows


def evaluation_runs(
    *, deployment: Deployment, version: int | None = None, source: str | None = None, status: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> QuerySet[EvaluationRun]:
    """Newest measurement first."""
    runs = EvaluationRun.objects.filter(deployment=deployment).select_related("version", "dataset")
    if version is not None:
        runs = runs.filter(version__number=version)
    if source:
        runs = runs.filter(source=source)
    if status:
        runs = runs.filter(status=status)
    return _between(runs, "measured_at", since, until).order_by("-measured_at", "-id")


def metric_points(
    *, deployment: Deployment, name: str | None = None, source: str | None = None, version: int | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> QuerySet[MetricPoint]:
    """Oldest first, as a series is drawn (metric_series_idx: deployment, name, at)."""
    points = MetricPoint.objects.filter(deployment=deployment).select_related("version")
    if name:
        points = points.filter(name=name)
    if source:
        points = points.filter(source=source)
    if version is not None:
        points = points.filter(version__number=version)
    return _between(points, "at", since, until).order_by("at", "id")


def drift_reports(
    *, deployment: Deployment, drifted: bool | None = None, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[DriftReport]:
    """Newest window first (drift_series_idx)."""
    reports = DriftReport.objects.filter(deployment=deployment)
    if drifted is not None:
        reports = reports.filter(drifted=drifted)
    return _between(reports, "window_end", since, until).order_by("-window_end", "-id")


def drift_feature_points(
    *, deployment: Deployment, feature: str | None = None, drifted: bool | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> QuerySet[DriftFeaturePoint]:
    """Oldest first (drift_feature_series_idx: deployment, at)."""
    points = DriftFeaturePoint.objects.filter(deployment=deployment)
    if feature:
        points = points.filter(feature=feature)
    if drifted is not None:
        points = points.filter(drifted=drifted)
    return _between(points, "at", since, until).order_by("at", "feature", "id")


def alerts_filtered(
    *, deployment: Deployment, unresolved: bool = False, status: str | None = None, kind: str | None = None,
    severity: str | None = None, since: datetime | None = None, until: datetime | None = None,
) -> QuerySet[Alert]:
    """Most recently seen first."""
    alerts = Alert.objects.filter(deployment=deployment)
    if unresolved:
        alerts = alerts.unresolved()
    if status:
        alerts = alerts.filter(status=status)
    if kind:
        alerts = alerts.filter(kind=kind)
    if severity:
        alerts = alerts.filter(severity=severity)
    return _between(alerts, "last_seen_at", since, until).order_by("-last_seen_at", "-id")

