"""The drift check: has a window of production traffic moved away from the reference data?

Per feature, every column is compared with the stored reference profile (monitoring/drift): exact KS for small
references, normalised Wasserstein for large ones, chi-square / Jensen-Shannon for categorical columns, as the
deployment's drift settings say. Predicted classes and scores are compared with the active version's outputs
on the reference; a domain classifier looks for joint shifts; performance is tested where labels exist and
estimated from calibrated probabilities where they do not yet.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np
from django.utils import timezone

from monitoring import drift, selectors, services
from monitoring.alert_keys import CONCEPT_DRIFT_KEY, DATA_DRIFT_KEY, PREDICTION_DRIFT_KEY
from monitoring.blobs import runner_for
from monitoring.drift import concept, multivariate
from monitoring.drift.prediction import prediction_drift_reason
from monitoring.models import Alert, Deployment, DriftReport, ModelVersion, ReferenceProfile

logger = logging.getLogger(__name__)

TITLE_FEATURES = 3  # an alert title names the few features that moved most; the report lists them all
# Labelled rows needed before a performance drop is tested; fewer say too little (and the test would say so).
MIN_LABELLED_ROWS = 30


def reference_profile(deployment: Deployment, version: ModelVersion | None) -> tuple[ReferenceProfile, drift.ReferenceStats]:
    """The stored profile of the deployment's reference with this version's predictions, built on first use."""
    dataset = deployment.reference_dataset
    model_sha = version.sha256 if version else ""
    row = selectors.reference_profile_for(dataset=dataset, model_sha256=model_sha)
    if row is None:
        X, y = services.dataset_load(dataset)
        predicted = scores = None
        if version is not None:
            outputs = runner_for(version).predict(X)
            predicted = outputs.labels
            scores = outputs.probabilities.max(axis=1) if outputs.probabilities is not None else None
        built = drift.build_profile(X, feature_names=deployment.feature_names, labels=y, predicted=predicted, scores=scores)
        row = services.reference_profile_store(dataset=dataset, model_sha256=model_sha, data=built.to_bytes(), n_rows=len(X))
        return row, built
    return row, drift.ReferenceStats.from_bytes(services.blob_read(row.sha256))


def _window(deployment: Deployment, window_start: datetime | None, window_end: datetime | None):
    window_end = window_end or timezone.now()
    window_start = window_start or window_end - timedelta(hours=deployment.drift_window_hours)
    current = selectors.production_window(deployment=deployment, start=window_start, end=window_end)
    rows = deployment.drift_window_rows
    if rows and len(current.X) > rows:
        # "The last N rows": the newest N predictions of the time window; the report's window starts at the first.
        current = current.newest(rows)
        window_start = current.first_timestamp()
    return window_start, window_end, current


def check_drift(
    *, deployment: Deployment, window_start: datetime | None = None, window_end: datetime | None = None
) -> DriftReport | None:
    """Compare traffic with window_start <= timestamp < window_end (default: the last drift_window_hours, or its
    newest drift_window_rows rows) to the reference profile, store the report and open or resolve drift alerts.

    Returns None, storing nothing, when there is no reference dataset or fewer than drift.MIN_CURRENT_ROWS
    predictions in the window: too little to test. Re-running a window updates its one report.
    """
    if deployment.reference_dataset is None:
        logger.info("drift check of %s skipped: no reference dataset", deployment.slug)
        return None
    window_start, window_end, current = _window(deployment, window_start, window_end)
    if len(current.X) < drift.MIN_CURRENT_ROWS:
        return None
    config = drift.DriftConfig.from_json(
        deployment.drift_config, p_value=deployment.drift_p_value, feature_names=deployment.feature_names
    )
    version = deployment.active_version()
    profile_row, profile = reference_profile(deployment, version)
    probabilities = None
    if version is not None:
        probabilities = runner_for(version).predict(current.X).probabilities
    scores = probabilities.max(axis=1) if probabilities is not None else None
    result = drift.feature_drift(
        profile,
        current.X,
        config=config,
        prediction_drift=drift.prediction_drift(profile, current.predicted, scores, p_value=config.p_value),
    )
    domain = multivariate.domain_classifier(
        profile.sample, current.X, feature_names=deployment.feature_names, threshold=config.multivariate_auc
    )
    report = services.drift_report_record(
        deployment=deployment, result=result, window_start=window_start, window_end=window_end,
        reference_dataset=deployment.reference_dataset, multivariate=domain.as_dict(),
        performance=_performance(deployment, version, profile, probabilities, window_start, window_end, config.p_value),
        profile=profile_row,
    )
    # Re-checking an old window must not reopen or close today's alerts: only the latest window speaks for now.
    if not deployment.drift_reports.filter(window_end__gt=window_end).exists():
        _update_alerts(deployment, report)
    return report


def _performance(deployment, version, profile, probabilities, start, end, alpha) -> dict:
    """{"estimated": CBPE from (calibrated) probabilities, "labelled": the tested drop, once labels arrived}."""
    performance: dict = {}
    if version is None:
        return performance
    if probabilities is not None:
        maps = None
        if profile.sample_labels is not None and len(profile.sample):
            reference_probabilities = runner_for(version).predict(profile.sample).probabilities
            maps = concept.calibrators(reference_probabilities, profile.sample_labels, version.class_labels)
        performance["estimated"] = concept.estimate_performance(probabilities, maps).as_dict()
    labelled = selectors.production_window(deployment=deployment, start=start, end=end, labelled_only=True)
    baseline = selectors.accuracy_baseline(version=version)
    if baseline is not None and len(labelled.X) >= MIN_LABELLED_ROWS:
        accuracy, n = baseline
        correct = int(np.sum(labelled.predicted == labelled.labels))
        performance["labelled"] = concept.accuracy_drop(
            baseline_correct=round(accuracy * n), baseline_n=n, current_correct=correct, current_n=len(labelled.X),
            alpha=alpha,
        ).as_dict()
    return performance


def _update_alerts(deployment: Deployment, report: DriftReport) -> None:
    if report.drifted:
        moved = [f["feature"] for f in report.features if f["drifted"]]
        named = ", ".join(moved[:TITLE_FEATURES])
        if len(moved) > TITLE_FEATURES:
            named += f" and {len(moved) - TITLE_FEATURES} more"
        tests = sorted({f["test"] for f in report.features if f["drifted"]})
        domain = report.multivariate or {}
        joint = ""
        if domain.get("ranked"):
            joint = (
                f" A classifier tells the windows apart with ROC-AUC {domain['auc']:.2f}; the features that give the "
                f"current window away most: {', '.join(r['feature'] for r in domain['ranked'][:TITLE_FEATURES])}."
            )
        services.alert_raise(
            deployment=deployment,
            kind=Alert.Kind.DATA_DRIFT,
            dedup_key=DATA_DRIFT_KEY,
            title=f"Data drift in {report.n_drifted} of {len(report.features)} features: {named}",
            message=(
                f"{report.n_current} predictions between {report.window_start.astimezone(UTC):%Y-%m-%d %H:%M} and "
                f"{report.window_end.astimezone(UTC):%Y-%m-%d %H:%M} UTC differ from the reference data "
                f"({report.n_reference} rows); tests: {', '.join(tests)}; the dataset drifts at "
                f"{report.drift_share:.0%} of features.{joint}"
            ),
            drift_report=report,
            figures={
                "n_drifted": report.n_drifted, "n_features": len(report.features), "drift_share": report.drift_share,
                "features": moved[:10], "tests": tests, "n_current": report.n_current,
                "window_start": report.window_start.isoformat(), "window_end": report.window_end.isoformat(),
            },
        )
    else:
        services.alert_resolve_key(deployment=deployment, dedup_key=DATA_DRIFT_KEY)

    predictions = report.prediction_drift
    if predictions.get("drifted"):
        shares = ", ".join(
            f"{label} {ref:.0%}→{cur:.0%}"
            for label, ref, cur in zip(predictions["classes"], predictions["reference"], predictions["current"])
        )
        reason = prediction_drift_reason(predictions)
        services.alert_raise(
            deployment=deployment,
            kind=Alert.Kind.PREDICTION_DRIFT,
            dedup_key=PREDICTION_DRIFT_KEY,
            title=f"Predictions shifted: {shares}"[:300],
            message=(
                f"The active version's outputs on {report.n_current} predictions differ from its outputs on the "
                f"reference data: {reason}."
            ),
            drift_report=report,
            figures={
                "reason": reason, "classes": predictions["classes"], "reference": predictions["reference"],
                "current": predictions["current"], "test": predictions["test"],
                "classes_drifted": predictions.get("classes_drifted", False),
                "score_drifted": bool((predictions.get("score") or {}).get("drifted")),
            },
        )
    elif predictions:
        services.alert_resolve_key(deployment=deployment, dedup_key=PREDICTION_DRIFT_KEY)

    labelled = (report.performance or {}).get("labelled")
    if labelled and labelled["significant"]:
        level = labelled.get("level", 0.95)
        services.alert_raise(
            deployment=deployment,
            kind=Alert.Kind.CONCEPT_DRIFT,
            dedup_key=CONCEPT_DRIFT_KEY,
            title=f"Accuracy fell from {labelled['baseline']:.1%} to {labelled['current']:.1%} on labelled traffic",
            message=(
                f"{labelled['current_n']} labelled predictions against {labelled['baseline_n']} on the evaluation set: "
                f"the {level:.0%} interval for the change, {labelled['ci_low']:+.1%} to {labelled['ci_high']:+.1%}, "
                f"lies below zero (two-sided Wald test, p = {labelled['p_value']:.2g})."
            ),
            # A warning: when the accuracy is also under its floor, the floor's alert is the critical one, and one
            # cause should not page twice.
            severity=Alert.Severity.WARNING,
            drift_report=report,
            figures={key: labelled[key] for key in (
                "baseline", "baseline_n", "current", "current_n", "difference", "ci_low", "ci_high", "p_value"
            )} | {"level": level},
        )
    elif labelled:
        services.alert_resolve_key(deployment=deployment, dedup_key=CONCEPT_DRIFT_KEY)
