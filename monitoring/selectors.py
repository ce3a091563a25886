"""Reads: plain data for views, the API and chart builders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from monitoring.models import (
    ROLE_RANK,
    Alert,
    Dataset,
    Deployment,
    DriftFeaturePoint,
    DriftReport,
    EvaluationRun,
    MaintenanceJob,
    Membership,
    MetricPoint,
    ModelVersion,
    Prediction,
    ReferenceProfile,
    Role,
)


def role_for(*, user: AbstractBaseUser, deployment: Deployment) -> str | None:
    """The user's role on a deployment through its team; superusers approve everywhere."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.APPROVER
    return Membership.objects.filter(team_id=deployment.team_id, user=user).values_list("role", flat=True).first()


def role_allows(role: str | None, need: str) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(need)]


def deployments_visible_to(*, user: AbstractBaseUser) -> QuerySet[Deployment]:
    deployments = Deployment.objects.select_related("team")
    if user.is_superuser:
        return deployments
    return deployments.filter(team__memberships__user=user).distinct()


class Health:
    OK = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "no data"


@dataclass(frozen=True)
class DeploymentSummary:
    deployment: Deployment
    health: str
    active_version: ModelVersion | None
    open_alerts: int
    candidates: int
    latest_metrics: dict
    predictions_24h: int
    last_prediction_at: datetime | None


def deployment_summary(*, deployment: Deployment) -> DeploymentSummary:
    open_alerts = list(
        deployment.alerts.filter(status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED]).values_list("severity", flat=True)
    )
    active = deployment.active_version()
    latest = (
        EvaluationRun.objects.filter(deployment=deployment, version=active, status=EvaluationRun.Status.SUCCEEDED)
        .order_by("-measured_at")
        .first()
        if active
        else None
    )
    if Alert.Severity.CRITICAL in open_alerts:
        health = Health.CRITICAL
    elif open_alerts:
        health = Health.WARNING
    elif latest is None:
        health = Health.UNKNOWN
    else:
        health = Health.OK
    since = timezone.now() - timedelta(hours=24)
    last = deployment.predictions.order_by("-timestamp").values_list("timestamp", flat=True).first()
    return DeploymentSummary(
        deployment=deployment,
        health=health,
        active_version=active,
        open_alerts=len(open_alerts),
        candidates=deployment.versions.filter(status=ModelVersion.Status.CANDIDATE).count(),
        latest_metrics=latest.metrics if latest else {},
        predictions_24h=deployment.predictions.filter(timestamp__gte=since).count(),
        last_prediction_at=last,
    )


def metric_series(
    *, deployment: Deployment, names: list[str], source: str, since: datetime | None = None
) -> dict[str, dict[str, list]]:
    """{"accuracy": {"at": [...], "value": [...], "version": [...]}, ...}, oldest first."""
    points = MetricPoint.objects.filter(deployment=deployment, name__in=names, source=source)
    if since is not None:
        points = points.filter(at__gte=since)
    series: dict[str, dict[str, list]] = {name: {"at": [], "value": [], "version": []} for name in names}
    for name, at, value, number in points.order_by("at").values_list("name", "at", "value", "version__number"):
        series[name]["at"].append(at)
        series[name]["value"].append(value)
        series[name]["version"].append(number)
    return series


def latest_drift_report(*, deployment: Deployment) -> DriftReport | None:
    return deployment.drift_reports.order_by("-window_end").first()


def drift_share_series(*, deployment: Deployment, since: datetime | None = None) -> dict[str, list]:
    reports = deployment.drift_reports.all()
    if since is not None:
        reports = reports.filter(window_end__gte=since)
    rows = list(reports.order_by("window_end").values_list("window_end", "share_drifted", "drifted"))
    return {"at": [r[0] for r in rows], "share": [r[1] for r in rows], "drifted": [r[2] for r in rows]}


@dataclass(frozen=True)
class VersionRow:
    version: ModelVersion
    evaluation_set: dict
    production: dict


def versions_with_metrics(*, deployment: Deployment) -> list[VersionRow]:
    """Each version with its latest metrics on the evaluation set and on production traffic, newest first."""
    versions = list(deployment.versions.select_related("created_by", "decided_by", "parent").order_by("-number"))
    latest: dict[tuple[int, str], dict] = {}
    runs = EvaluationRun.objects.filter(deployment=deployment, status=EvaluationRun.Status.SUCCEEDED).order_by("measured_at")
    for version_id, source, metrics in runs.values_list("version_id", "source", "metrics"):
        latest[(version_id, source)] = metrics  # later runs overwrite earlier ones
    return [
        VersionRow(
            version=v,
            evaluation_set=latest.get((v.pk, EvaluationRun.Source.EVALUATION_SET), {}),
            production=latest.get((v.pk, EvaluationRun.Source.PRODUCTION), {}),
        )
        for v in versions
    ]


def alerts_for(*, deployment: Deployment | None = None, user: AbstractBaseUser | None = None, unresolved_only: bool = False):
    alerts = Alert.objects.select_related("deployment").order_by("-last_seen_at")
    if deployment is not None:
        alerts = alerts.filter(deployment=deployment)
    if user is not None:
        alerts = alerts.filter(deployment__in=deployments_visible_to(user=user))
    if unresolved_only:
        alerts = alerts.filter(status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED])
    return alerts


def jobs_for(*, deployment: Deployment) -> QuerySet[MaintenanceJob]:
    return deployment.jobs.select_related("source_version", "candidate", "requested_by").order_by("-created_at")


@dataclass(frozen=True)
class ProductionWindow:
    X: np.ndarray
    predicted: np.ndarray
    labels: np.ndarray | None
    timestamps: list[datetime]
    request_ids: list[str]


def production_window(
    *, deployment: Deployment, start: datetime, end: datetime, labelled_only: bool = False, limit: int | None = None
) -> ProductionWindow:
    """Features (float64), predictions and labels of traffic with start <= timestamp < end, oldest first."""
    rows = Prediction.objects.filter(deployment=deployment, timestamp__gte=start, timestamp__lt=end)
    if labelled_only:
        rows = rows.filter(label__isnull=False)
    rows = rows.order_by("timestamp")
    if limit is not None:
        rows = rows[:limit]
    values = list(rows.values_list("features", "predicted_label", "label", "timestamp", "request_id"))
    n = deployment.n_features
    X = np.array([v[0] for v in values], dtype=np.float64).reshape(-1, n)
    predicted = np.array([v[1] for v in values], dtype=str)
    labels = np.array([v[2] for v in values], dtype=str) if labelled_only else None
    return ProductionWindow(X, predicted, labels, [v[3] for v in values], [v[4] for v in values])


# ---------------------------------------------------------------- drift


def reference_profile_for(*, dataset: Dataset, model_sha256: str) -> ReferenceProfile | None:
    return ReferenceProfile.objects.filter(dataset=dataset, model_sha256=model_sha256).first()


def drift_feature_series(
    *, deployment: Deployment, since: datetime | None = None, features: list[str] | None = None
) -> dict[str, dict[str, list]]:
    """{"feature": {"at": [...], "statistic": [...], "threshold": [...], "drifted": [...], "test": [...]}}, oldest
    first: each feature's drift statistic over the stored checks."""
    points = DriftFeaturePoint.objects.filter(deployment=deployment)
    if since is not None:
        points = points.filter(at__gte=since)
    if features is not None:
        points = points.filter(feature__in=features)
    series: dict[str, dict[str, list]] = {}
    rows = points.order_by("at").values_list("feature", "at", "statistic", "threshold", "drifted", "test")
    for feature, at, statistic, threshold, drifted, test in rows:
        s = series.setdefault(feature, {"at": [], "statistic": [], "threshold": [], "drifted": [], "test": []})
        for key, value in zip(("at", "statistic", "threshold", "drifted", "test"), (at, statistic, threshold, drifted, test)):
            s[key].append(value)
    return series


def accuracy_baseline(*, version: ModelVersion) -> tuple[float, int] | None:
    """(accuracy, rows) of the version's latest successful run on the evaluation set: the concept-drift baseline."""
    run = (
        EvaluationRun.objects.filter(
            version=version, source=EvaluationRun.Source.EVALUATION_SET, status=EvaluationRun.Status.SUCCEEDED
        )
        .order_by("-measured_at")
        .first()
    )
    if run is None or "accuracy" not in run.metrics or not run.n_rows:
        return None
    return float(run.metrics["accuracy"]), int(run.n_rows)


def deployments_due_for_drift(*, deployment_ids: list[int], now: datetime) -> list[int]:
    """Of these deployments, those whose own drift interval has passed since their last check (or that have
    none: then every beat is due)."""
    due = []
    for deployment in Deployment.objects.filter(pk__in=deployment_ids).only("pk", "drift_interval_minutes"):
        if not deployment.drift_interval_minutes:
            due.append(deployment.pk)
            continue
        last = deployment.drift_reports.order_by("-created_at").values_list("created_at", flat=True).first()
        if last is None or now - last >= timedelta(minutes=deployment.drift_interval_minutes):
            due.append(deployment.pk)
    return due
