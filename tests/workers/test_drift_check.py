"""The drift check against the reference dataset: reports, alerts, and idempotent re-runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import time_machine
from django.utils import timezone

from monitoring import drift
from monitoring.models import Alert, DriftReport
from tests.conftest import breast_cancer_split
from tests.workers.conftest import holdout, ingest_traffic
from workers.drift_check import DATA_DRIFT_KEY, PREDICTION_DRIFT_KEY, check_drift
from workers.evaluation import runner_for

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
    assert PREDICTION_DRIFT_KEY in _open_alerts(deployment)


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
