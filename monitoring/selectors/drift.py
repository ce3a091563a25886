"""Drift reports, their per-feature series, reference profiles, and which deployments are due a check."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Max

from monitoring.models import (
    Dataset,
    Deployment,
    DriftFeaturePoint,
    DriftReport,
    EvaluationRun,
    ModelVersion,
    ReferenceProfile,
)


def latest_drift_report(*, deployment: Deployment) -> DriftReport | None:
    return deployment.drift_reports.order_by("-window_end").first()


def drift_share_series(*, deployment: Deployment, since: datetime | None = None) -> dict[str, list]:
    reports = deployment.drift_reports.all()
    if since is not None:
        reports = reports.filter(window_end__gte=since)
    rows = list(reports.order_by("window_end").values_list("window_end", "share_drifted", "drifted"))
    return {"at": [r[0] for r in rows], "share": [r[1] for r in rows], "drifted": [r[2] for r in rows]}


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
    run = EvaluationRun.objects.filter(version=version, source=EvaluationRun.Source.EVALUATION_SET).latest_succeeded()
    if run is None or "accuracy" not in run.metrics or not run.n_rows:
        return None
    return float(run.metrics["accuracy"]), int(run.n_rows)


def deployments_due_for_drift(*, deployment_ids: list[int], now: datetime) -> list[int]:
    """Of these deployments, those whose own drift interval has passed since their last check (or that have
    none: then every beat is due)."""
    # One query for every deployment, not one per deployment: beat runs this on each tick.
    rows = (
        Deployment.objects.filter(pk__in=deployment_ids)
        .annotate(last_check=Max("drift_reports__created_at"))
        .values_list("pk", "drift_interval_minutes", "last_check")
    )
    return [
        pk for pk, interval, last in rows
        if not interval or last is None or now - last >= timedelta(minutes=interval)
    ]
