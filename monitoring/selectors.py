"""Reads: plain data for views, the API and chart builders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from monitoring.models import (
    ROLE_RANK,
    Alert,
    Deployment,
    DriftReport,
    EvaluationRun,
    MaintenanceJob,
    Membership,
    MetricPoint,
    ModelVersion,
    Prediction,
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


# ---------------------------------------------------------------- maintenance job options


@lru_cache(maxsize=256)
def _kind_options(sha256: str, *, has_recipe: bool, has_reference: bool, has_evaluation_set: bool) -> tuple:
    """Cached by content: the answer depends only on the file (whose sha256 is its identity) and the flags, and
    the float16 check loads a converted session, which every page view would otherwise repeat."""
    from monitoring.services import blob_read
    from workers.applicability import kind_options

    return tuple(kind_options(
        onnx_bytes=blob_read(sha256), has_recipe=has_recipe, has_reference=has_reference,
        has_evaluation_set=has_evaluation_set,
    ))


@dataclass(frozen=True)
class JobOption:
    kind: str
    label: str
    applicable: bool
    reason: str


def job_options(*, version: ModelVersion) -> list[JobOption]:
    """Every maintenance job kind for this version: whether it applies to its graph and data, and why not."""
    deployment = version.deployment
    evaluation = deployment.evaluation_dataset
    options = _kind_options(
        version.sha256,
        has_recipe=bool(version.recipe_sha256),
        has_reference=deployment.reference_dataset_id is not None,
        has_evaluation_set=evaluation is not None and evaluation.has_labels,
    )
    labels = dict(MaintenanceJob.Kind.choices)
    return [JobOption(o.kind, labels[o.kind], o.applicable, o.reason) for o in options]


# ---------------------------------------------------------------- fair comparison for approval


@dataclass(frozen=True)
class SourceComparison:
    source: str  # "Evaluation set", "Labelled production window (…)"
    comparison: object  # monitoring.comparison.Comparison


@dataclass(frozen=True)
class VersionComparison:
    candidate: ModelVersion
    active: ModelVersion
    sources: list[SourceComparison]
    size_ratio: float
    latency_ratio: float | None  # candidate p50 / active p50, single row, from their latest evaluation-set runs
    throughput_ratio: float | None


def _latest_metrics(version: ModelVersion) -> dict:
    run = (
        EvaluationRun.objects.filter(version=version, source=EvaluationRun.Source.EVALUATION_SET, status="succeeded")
        .order_by("-measured_at").first()
    )
    return run.metrics if run else {}


def _ratio(a, b) -> float | None:
    return float(a) / float(b) if a and b else None


def version_comparison(*, candidate: ModelVersion, active: ModelVersion) -> VersionComparison:
    """Both versions run on exactly the same rows: the evaluation set and the latest labelled production window.

    Predictions are made here, not read from stored runs, because McNemar and the paired bootstrap need the
    row-by-row answers of both versions; the models are small and cached (workers.evaluation.runner_for).
    """
    from monitoring.comparison import compare
    from monitoring.services import dataset_load
    from workers.evaluation import runner_for

    deployment = candidate.deployment
    labels = [str(c) for c in deployment.class_labels]
    rows: list[tuple[str, np.ndarray, np.ndarray]] = []
    evaluation = deployment.evaluation_dataset
    if evaluation is not None and evaluation.has_labels:
        X, y = dataset_load(evaluation)
        rows.append((f"Evaluation set ({evaluation.name})", np.asarray(X), np.asarray(y).astype(str)))
    end = timezone.now()
    start = end - timedelta(days=deployment.evaluation_window_days)
    window = production_window(deployment=deployment, start=start, end=end, labelled_only=True)
    if len(window.X):
        rows.append((f"Labelled production, last {deployment.evaluation_window_days} days", window.X, window.labels))
    sources = [
        SourceComparison(
            name,
            compare(y, runner_for(active).predict(X).labels, runner_for(candidate).predict(X).labels, labels),
        )
        for name, X, y in rows
    ]
    a, c = _latest_metrics(active), _latest_metrics(candidate)
    return VersionComparison(
        candidate=candidate, active=active, sources=sources,
        size_ratio=candidate.size_bytes / active.size_bytes,
        latency_ratio=_ratio(c.get("latency_p50_ms"), a.get("latency_p50_ms")),
        throughput_ratio=_ratio(c.get("throughput_rows_per_s"), a.get("throughput_rows_per_s")),
    )


@dataclass(frozen=True)
class VersionPoint:
    number: int
    status: str
    origin: str
    size_bytes: int
    f1_macro: float | None
    latency_p50_ms: float | None


def version_points(*, deployment: Deployment) -> list[VersionPoint]:
    """Every non-rejected version with its size and its latest evaluation-set F1 and latency: the Pareto chart."""
    points = []
    for version in deployment.versions.exclude(status=ModelVersion.Status.REJECTED).order_by("number"):
        metrics = _latest_metrics(version)
        points.append(VersionPoint(
            version.number, version.status, version.origin, version.size_bytes,
            metrics.get("f1_macro"), metrics.get("latency_p50_ms"),
        ))
    return points
