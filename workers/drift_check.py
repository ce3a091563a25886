"""The drift check: has a window of production traffic moved away from the reference data?

Features are compared with per-feature KS tests (monitoring/drift.py); predicted classes with a
chi-square test against what the active version predicts on the reference data.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np
from django.utils import timezone

from monitoring import drift, selectors, services
from monitoring.models import Alert, Deployment, DriftReport
from workers.evaluation import runner_for

logger = logging.getLogger(__name__)

DATA_DRIFT_KEY = "drift:data"
PREDICTION_DRIFT_KEY = "drift:prediction"
TITLE_FEATURES = 3  # an alert title names the few features that moved most; the report lists them all


def _reference_predictions(deployment: Deployment, X: np.ndarray) -> np.ndarray | None:
    active = deployment.active_version()
    if active is None:
        return None
    return runner_for(active).predict(X).labels


def check_drift(
    *, deployment: Deployment, window_start: datetime | None = None, window_end: datetime | None = None
) -> DriftReport | None:
    """Compare traffic with window_start <= timestamp < window_end (default: the last drift_window_hours) to the
    reference dataset, store the report and open or resolve the drift alerts.

    Returns None, storing nothing, when there is no reference dataset or fewer than drift.MIN_CURRENT_ROWS
    predictions in the window: too little to test. Re-running a window updates its one report.
    """
    window_end = window_end or timezone.now()
    window_start = window_start or window_end - timedelta(hours=deployment.drift_window_hours)
    reference_dataset = deployment.reference_dataset
    if reference_dataset is None:
        logger.info("drift check of %s skipped: no reference dataset", deployment.slug)
        return None
    current = selectors.production_window(deployment=deployment, start=window_start, end=window_end)
    if len(current.X) < drift.MIN_CURRENT_ROWS:
        return None
    reference_X, _ = services.dataset_load(reference_dataset)
    result = drift.feature_drift(
        reference_X,
        current.X,
        feature_names=deployment.feature_names,
        p_value=deployment.drift_p_value,
        reference_predictions=_reference_predictions(deployment, reference_X),
        current_predictions=current.predicted,
    )
    report = services.drift_report_record(
        deployment=deployment, result=result, window_start=window_start, window_end=window_end,
        reference_dataset=reference_dataset,
    )
    # Re-checking an old window must not reopen or close today's alerts: only the latest window speaks for now.
    if not deployment.drift_reports.filter(window_end__gt=window_end).exists():
        _update_alerts(deployment, report)
    return report


def _update_alerts(deployment: Deployment, report: DriftReport) -> None:
    if report.drifted:
        moved = [f["feature"] for f in report.features if f["drifted"]]
        named = ", ".join(moved[:TITLE_FEATURES])
        if len(moved) > TITLE_FEATURES:
            named += f" and {len(moved) - TITLE_FEATURES} more"
        services.alert_raise(
            deployment=deployment,
            kind=Alert.Kind.DATA_DRIFT,
            dedup_key=DATA_DRIFT_KEY,
            title=f"Data drift in {report.n_drifted} of {len(report.features)} features: {named}",
            message=(
                f"{report.n_current} predictions between {report.window_start.astimezone(UTC):%Y-%m-%d %H:%M} and "
                f"{report.window_end.astimezone(UTC):%Y-%m-%d %H:%M} UTC differ from the reference data "
                f"({report.n_reference} rows); KS tests at a family-wise p < {deployment.drift_p_value}."
            ),
            drift_report=report,
        )
    else:
        services.alert_resolve_key(deployment=deployment, dedup_key=DATA_DRIFT_KEY)

    predictions = report.prediction_drift
    if predictions.get("drifted"):
        shares = ", ".join(
            f"{label} {ref:.0%}→{cur:.0%}"
            for label, ref, cur in zip(predictions["classes"], predictions["reference"], predictions["current"])
        )
        services.alert_raise(
            deployment=deployment,
            kind=Alert.Kind.DATA_DRIFT,
            dedup_key=PREDICTION_DRIFT_KEY,
            title=f"Predicted classes shifted: {shares}"[:300],
            message=(
                f"The share of each predicted class differs from the active version's predictions on the reference "
                f"data (chi-square p = {predictions['p_value']:.2g})."
            ),
            drift_report=report,
        )
    elif predictions:
        services.alert_resolve_key(deployment=deployment, dedup_key=PREDICTION_DRIFT_KEY)
