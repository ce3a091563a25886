"""Drift reports and reference profiles."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from monitoring.models import (
    Dataset,
    Deployment,
    DriftFeaturePoint,
    DriftReport,
    ReferenceProfile,
)
from monitoring.services.blobs import blob_put


@transaction.atomic
def drift_report_record(
    *,
    deployment: Deployment,
    result,  # monitoring.drift.DriftResult
    window_start: datetime,
    window_end: datetime,
    reference_dataset: Dataset | None,
    multivariate: dict | None = None,
    performance: dict | None = None,
    profile: ReferenceProfile | None = None,
) -> DriftReport:
    """Store a drift check's result and its per-feature series points; a re-run for the same window updates the
    one report for it (and replaces its points)."""
    report, _ = DriftReport.objects.update_or_create(
        deployment=deployment,
        window_start=window_start,
        window_end=window_end,
        defaults={
            "reference_dataset": reference_dataset,
            "n_reference": result.n_reference,
            "n_current": result.n_current,
            "features": result.features_as_dicts(),
            "n_drifted": result.n_drifted,
            "share_drifted": result.share_drifted,
            "drifted": result.drifted,
            "prediction_drift": result.prediction_drift,
            "multivariate": multivariate or {},
            "performance": performance or {},
            "drift_share": result.drift_share,
            "correction": result.correction,
            "profile": profile,
        },
    )
    report.points.all().delete()
    DriftFeaturePoint.objects.bulk_create(
        DriftFeaturePoint(
            report=report, deployment=deployment, feature=f.feature, at=window_end, test=f.test,
            statistic=f.statistic, p_value=f.p_value, threshold=f.threshold, moved=f.moved, drifted=f.drifted,
        )
        for f in result.features
    )
    return report


def reference_profile_store(*, dataset: Dataset, model_sha256: str, data: bytes, n_rows: int) -> ReferenceProfile:
    """Keep a built profile (bytes of monitoring.drift.ReferenceStats) as a blob; building the same profile
    twice, e.g. by two workers at once, keeps the first row."""
    with transaction.atomic():
        sha = blob_put(data)
        profile, _ = ReferenceProfile.objects.get_or_create(
            dataset=dataset, model_sha256=model_sha256, defaults={"sha256": sha, "size_bytes": len(data), "n_rows": n_rows}
        )
    return profile
