"""The drift check against the reference dataset: reports, alerts, and idempotent re-runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import time_machine
from django.utils import timezone

from monitoring import drift
from monitoring.blobs import runner_for
from monitoring.models import Alert, DriftReport
from tests.conftest import breast_cancer_split
from tests.workers.conftest import holdout, ingest_traffic
from workers.drift_check import DATA_DRIFT_KEY, PREDICTION_DRIFT_KEY, check_drift

pytestmark = pytest.mark.django_db


def _shifted(X: np.ndarray) -> np.ndarray:
    """Every feature moved up by one training standard deviation."""
    X_train = breast_cancer_split()[0]
    return X + X_train.std(axis=0)


def _traffic(deployment, X: np.ndarray, *, prefix: str, end=None):
    """Ingest X, predicted by the active model, as one row a minute ending just before `end`; return the window."""
    end = end or timezone.now()
    start = end - timedelta(minutes=len(X) + 1)
    predicted = runner_for(deployment.active_version()).predict(X).labels
    ingest_traffic(deployment, X, predicted=predicted, start=start, prefix=prefix)
    return start, end


def _open_alerts(deployment) -> dict[str, Alert]:
    return {a.dedup_key: a for a in Alert.objects.filter(deployment=deployment, status=Alert.Status.OPEN)}


def test_shifted_traffic_gives_a_drifted_report_and_one_open_alert(deployment):
    X, _ = holdout()
    start, end = _traffic(deployment, _shifted(X[:150]), prefix="shifted")

    report = check_drift(deployment=deployment, window_start=start, window_end=end)

    assert report.drifted and report.n_current == 150 and report.n_reference == 350
    assert report.n_drifted > len(deployment.feature_names) / 2
    assert report.reference_dataset == deployment.reference_dataset
    order = [(f["drifted"], f["moved"]) for f in report.features]
    assert order == sorted(order, reverse=True)  # drifted first, then by how much each moved
    alert = _open_alerts(deployment)[DATA_DRIFT_KEY]
    assert alert.kind == Alert.Kind.DATA_DRIFT and alert.drift_report == report
    assert report.features[0]["feature"] in alert.title


def test_re_running_the_check_for_a_window_keeps_one_report_and_one_alert(deployment):
    X, _ = holdout()
    start, end = _traffic(deployment, _shifted(X[:150]), prefix="shifted")

    first = check_drift(deployment=deployment, window_start=start, window_end=end)
    second = check_drift(deployment=deployment, window_start=start, window_end=end)

    assert second.pk == first.pk and DriftReport.objects.count() == 1
    assert Alert.objects.filter(dedup_key=DATA_DRIFT_KEY).count() == 1
    assert _open_alerts(deployment)[DATA_DRIFT_KEY].occurrences == 2


def test_traffic_like_the_reference_is_not_drift_and_resolves_the_open_alert(deployment):
    X, _ = holdout()
    now = timezone.now()
    old = _traffic(deployment, _shifted(X[:100]), prefix="shifted", end=now - timedelta(hours=5))
    check_drift(deployment=deployment, window_start=old[0], window_end=old[1])
    assert DATA_DRIFT_KEY in _open_alerts(deployment)

    start, end = _traffic(deployment, X[100:219], prefix="normal", end=now)
    report = check_drift(deployment=deployment, window_start=start, window_end=end)

    assert not report.drifted and report.n_current == 119
    assert report.prediction_drift["drifted"] is False
    assert _open_alerts(deployment) == {}
    assert Alert.objects.get(dedup_key=DATA_DRIFT_KEY).status == Alert.Status.RESOLVED


def test_re_checking_an_older_window_leaves_the_current_alerts_alone(deployment):
    X, _ = holdout()
    now = timezone.now()
    old = _traffic(deployment, X[:100], prefix="normal", end=now - timedelta(hours=5))
    new = _traffic(deployment, _shifted(X[100:219]), prefix="shifted", end=now)
    check_drift(deployment=deployment, window_start=old[0], window_end=old[1])
    check_drift(deployment=deployment, window_start=new[0], window_end=new[1])

    check_drift(deployment=deployment, window_start=old[0], window_end=old[1])

    assert DATA_DRIFT_KEY in _open_alerts(deployment)
    assert DriftReport.objects.count() == 2


def test_a_shift_in_predicted_classes_opens_a_prediction_drift_alert(deployment):
    X, _ = holdout()
    # Only the rows the model calls "1": the features barely move as a whole, the predicted classes do.
    runner = runner_for(deployment.active_version())
    ones = X[runner.predict(X).labels == "1"][:120]
    start, end = _traffic(deployment, ones, prefix="ones")

    report = check_drift(deployment=deployment, window_start=start, window_end=end)

    assert report.prediction_drift["drifted"] is True
    assert report.prediction_drift["current"][report.prediction_drift["classes"].index("1")] == 1.0
    alert = _open_alerts(deployment)[PREDICTION_DRIFT_KEY]
    assert alert.kind == Alert.Kind.PREDICTION_DRIFT and alert.figures["reason"] in alert.message


def test_a_window_with_too_few_predictions_stores_nothing(deployment):
    X, _ = holdout()
    _traffic(deployment, X[: drift.MIN_CURRENT_ROWS - 1], prefix="few")

    assert check_drift(deployment=deployment) is None
    assert not DriftReport.objects.exists() and not Alert.objects.exists()


def test_the_default_window_is_the_last_drift_window_hours_start_included(deployment):
    X, _ = holdout()
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    # 100 rows 20 minutes apart, the last 20 minutes before now: row 28 sits exactly 24 hours back.
    ingest_traffic(
        deployment, X[:100], predicted=np.array(["1"] * 100), start=now - timedelta(minutes=20 * 100),
        spacing=timedelta(minutes=20),
    )

    with time_machine.travel(now, tick=False):
        report = check_drift(deployment=deployment)

    assert report.n_current == 72
    assert (report.window_start, report.window_end) == (now - timedelta(hours=24), now)


# ---------------------------------------------------------------- the reference profile, series, settings


def test_the_reference_profile_is_built_once_stored_as_a_blob_and_reused(deployment):
    from monitoring import selectors, services
    from monitoring.models import ReferenceProfile

    X, _ = holdout()
    start, end = _traffic(deployment, X[:100], prefix="normal")

    first = check_drift(deployment=deployment, window_start=start, window_end=end)
    second = check_drift(deployment=deployment, window_start=start + timedelta(minutes=1), window_end=end)

    profile = ReferenceProfile.objects.get()
    assert first.profile == second.profile == profile
    assert profile.dataset == deployment.reference_dataset and profile.model_sha256 == deployment.active_version().sha256
    stored = drift.ReferenceStats.from_bytes(services.blob_read(profile.sha256))  # sha256-verified read
    assert stored.n_rows == 350 and stored.predicted_counts and stored.sample_labels is not None
    assert selectors.reference_profile_for(dataset=deployment.reference_dataset, model_sha256="") is None


def test_a_report_stores_every_statistic_histograms_the_multivariate_verdict_and_estimated_performance(deployment):
    X, _ = holdout()
    start, end = _traffic(deployment, _shifted(X[:150]), prefix="shifted")

    report = check_drift(deployment=deployment, window_start=start, window_end=end)

    row = report.features[0]
    assert row["test"] == "ks" and row["p_value"] <= row["threshold"] and row["drifted"]
    assert set(row["statistics"]) == {"ks", "ks_p_value", "wasserstein", "psi", "jensenshannon"}
    assert len(row["histogram"]["reference"]) == len(row["histogram"]["current"]) == len(row["histogram"]["edges"]) - 1
    assert report.multivariate["drifted"] and report.multivariate["auc"] > 0.9
    assert len(report.multivariate["ranked"]) == len(deployment.feature_names)
    estimated = report.performance["estimated"]
    assert 0.5 <= estimated["accuracy"] <= 1 and estimated["calibrated"] and estimated["n"] == 150
    assert "labelled" not in report.performance  # no labels yet: estimated only
    assert "ROC-AUC" in _open_alerts(deployment)[DATA_DRIFT_KEY].message


def test_per_feature_points_give_a_drift_series_over_checks(deployment):
    from monitoring import selectors

    X, _ = holdout()
    now = timezone.now()
    old = _traffic(deployment, X[:100], prefix="normal", end=now - timedelta(hours=5))
    new = _traffic(deployment, _shifted(X[100:219]), prefix="shifted", end=now)
    check_drift(deployment=deployment, window_start=old[0], window_end=old[1])
    check_drift(deployment=deployment, window_start=new[0], window_end=new[1])
    check_drift(deployment=deployment, window_start=new[0], window_end=new[1])  # a re-run replaces its points

    series = selectors.drift_feature_series(deployment=deployment, features=["f0"])

    assert list(series) == ["f0"]
    assert series["f0"]["at"] == [old[1], new[1]]
    assert series["f0"]["drifted"] == [False, True]
    assert series["f0"]["statistic"][1] > series["f0"]["statistic"][0]


def test_a_significant_drop_in_labelled_accuracy_opens_a_concept_drift_alert(deployment):
    from workers.drift_check import CONCEPT_DRIFT_KEY
    from workers.evaluation import evaluate_deployment

    evaluate_deployment(deployment=deployment)  # the evaluation-set baseline
    X, y = holdout()
    end = timezone.now()
    start = end - timedelta(minutes=len(X) + 1)
    predicted = runner_for(deployment.active_version()).predict(X).labels
    wrong = np.where(np.arange(len(y)) % 3 == 0, np.where(y == "0", "1", "0"), y)  # a third of the labels flipped
    ingest_traffic(deployment, X, predicted=predicted, labels=wrong, start=start, prefix="labelled")

    report = check_drift(deployment=deployment, window_start=start, window_end=end)

    labelled = report.performance["labelled"]
    assert labelled["significant"] and labelled["current"] < labelled["baseline"] and labelled["ci_high"] < 0
    alert = _open_alerts(deployment)[CONCEPT_DRIFT_KEY]
    assert (alert.kind, alert.severity, alert.drift_report) == (Alert.Kind.CONCEPT_DRIFT, Alert.Severity.WARNING, report)
    # The figures it was raised on, and a message that claims nothing its own interval contradicts.
    assert alert.figures["ci_high"] < 0 and alert.figures["current_n"] == len(X)
    assert "lies below zero" in alert.message and "one-sided" not in alert.message


def test_the_last_n_rows_window_checks_only_the_newest_rows(deployment):
    from monitoring import services

    X, _ = holdout()
    end = timezone.now()
    _traffic(deployment, _shifted(X[:100]), prefix="old", end=end - timedelta(minutes=110))
    _traffic(deployment, X[100:160], prefix="new", end=end)
    services.deployment_drift_configure(deployment=deployment, by=None, window_rows=60)

    report = check_drift(deployment=deployment, window_end=end)

    assert report.n_current == 60 and not report.drifted
    assert report.window_start > end - timedelta(minutes=62)


def test_deployment_drift_settings_choose_the_test_and_bad_settings_are_rejected_unchanged(deployment, approver):
    from monitoring import services
    from monitoring.services import ValidationFailed

    X, _ = holdout()
    start, end = _traffic(deployment, X[:100], prefix="normal")
    services.deployment_drift_configure(
        deployment=deployment, by=approver, config={"test": "psi", "features": {"f0": {"test": "wasserstein"}}}
    )

    report = check_drift(deployment=deployment, window_start=start, window_end=end)

    tests = {f["feature"]: f["test"] for f in report.features}
    assert tests["f0"] == "wasserstein" and tests["f1"] == "psi"
    with pytest.raises(ValidationFailed):
        services.deployment_drift_configure(deployment=deployment, by=approver, config={"test": "anova"})
    deployment.refresh_from_db()
    assert deployment.drift_config["test"] == "psi"


def test_a_deployment_with_its_own_interval_is_due_only_once_it_has_passed(deployment):
    from monitoring import selectors, services

    X, _ = holdout()
    start, end = _traffic(deployment, X[:100], prefix="normal")
    assert selectors.deployments_due_for_drift(deployment_ids=[deployment.pk], now=end) == [deployment.pk]
    services.deployment_drift_configure(deployment=deployment, by=None, interval_minutes=60)
    check_drift(deployment=deployment, window_start=start, window_end=end)

    now = timezone.now()
    assert selectors.deployments_due_for_drift(deployment_ids=[deployment.pk], now=now) == []
    assert selectors.deployments_due_for_drift(deployment_ids=[deployment.pk], now=now + timedelta(minutes=61)) == [deployment.pk]


def test_a_new_reference_dataset_queues_its_profile_and_the_task_builds_it_once(deployment, approver, django_capture_on_commit_callbacks):
    from monitoring import services
    from monitoring.models import Dataset, ReferenceProfile
    from workers.tasks import build_reference_profile_task

    X, y = holdout()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.dataset_register(deployment=deployment, kind=Dataset.Kind.REFERENCE, name="newer", X=X, y=y, by=approver)
        services.dataset_register(deployment=deployment, kind=Dataset.Kind.EVALUATION, name="eval", X=X, y=y, by=approver)
    assert len(callbacks) == 1  # only the reference is profiled

    deployment.refresh_from_db()
    build_reference_profile_task(deployment.pk)
    build_reference_profile_task(deployment.pk)  # a redelivery finds it built

    profile = ReferenceProfile.objects.get()
    assert profile.dataset == deployment.reference_dataset and profile.n_rows == len(X)
