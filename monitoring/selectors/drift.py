"""Drift reports, their per-feature series and reference profiles (which deployments are due a check: checks.py)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

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


def drift_share_series(
    *, deployment: Deployment, since: datetime | None = None, until: datetime | None = None
) -> dict[str, list]:
    """{"at", "share", "drifted", "report"} per drift check, oldest first; "report" is the report's id."""
    reports = deployment.drift_reports.all()
    if since is not None:
        reports = reports.filter(window_end__gte=since)
    if until is not None:
        reports = reports.filter(window_end__lte=until)
    rows = list(reports.order_by("window_end", "pk").values_list("window_end", "share_drifted", "drifted", "pk"))
    return {
        "at": [r[0] for r in rows], "share": [r[1] for r in rows], "drifted": [r[2] for r in rows],
        "report": [r[3] for r in rows],
    }


def drift_reports_for(*, deployment: Deployment):
    """The deployment's drift reports, newest first (the list page paginates it)."""
    # "deployment" among the fields: the related manager sets each row's deployment, which read a deferred
    # deployment_id once per row.
    return deployment.drift_reports.order_by("-window_end", "-pk").only(
        "pk", "deployment", "window_start", "window_end", "drifted", "n_drifted", "share_drifted", "n_current", "n_reference", "created_at"
    )


def drift_report_neighbours(*, report: DriftReport) -> tuple[DriftReport | None, DriftReport | None]:
    """(the check before this one, the check after it) in window order, for prev/next links."""
    reports = report.deployment.drift_reports.only("pk", "deployment", "window_end")  # see drift_reports_for
    same_end_earlier = Q(window_end=report.window_end, pk__lt=report.pk)
    same_end_later = Q(window_end=report.window_end, pk__gt=report.pk)
    previous = reports.filter(Q(window_end__lt=report.window_end) | same_end_earlier).order_by("-window_end", "-pk").first()
    following = reports.filter(Q(window_end__gt=report.window_end) | same_end_later).order_by("window_end", "pk").first()
    return previous, following


def reference_profile_for(*, dataset: Dataset, model_sha256: str) -> ReferenceProfile | None:
    return ReferenceProfile.objects.filter(dataset=dataset, model_sha256=model_sha256).first()


def drift_feature_series(
    *, deployment: Deployment, since: datetime | None = None, features: list[str] | None = None
) -> dict[str, dict[str, list]]:
    """{"feature": {"at", "statistic", "p_value", "threshold", "moved", "drifted", "test", "report"}}, each a list,
    oldest first: each feature's drift result over the stored checks. `threshold` is a p-value threshold for
    p-value tests (compare it with `p_value`) and a distance threshold otherwise (compare it with `statistic`)."""
    points = DriftFeaturePoint.objects.filter(deployment=deployment)
    if since is not None:
        points = points.filter(at__gte=since)
    if features is not None:
        points = points.filter(feature__in=features)
    keys = ("at", "statistic", "p_value", "threshold", "moved", "drifted", "test", "report")
    series: dict[str, dict[str, list]] = {}
    rows = points.order_by("at").values_list("feature", *keys[:-1], "report_id")
    for feature, *values in rows:
        s = series.setdefault(feature, {key: [] for key in keys})
        for key, value in zip(keys, values):
            s[key].append(value)
    return series


def accuracy_baseline(*, version: ModelVersion) -> tuple[float, int] | None:
    """(accuracy, rows) of the version's latest successful run on the evaluation set: the concept-drift baseline."""
    run = EvaluationRun.objects.filter(version=version, source=EvaluationRun.Source.EVALUATION_SET).latest_succeeded()
    if run is None or "accuracy" not in run.metrics or not run.n_rows:
        return None
    return float(run.metrics["accuracy"]), int(run.n_rows)
