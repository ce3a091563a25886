"""docker/demo_fleet.py, the demo's simulated serving instance, against the live server: it serves, logs its
traffic and some labels, and follows an approval."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from monitoring import services
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import Prediction, ServingInstance
from tests.builders import make_deployment
from tests.client.conftest import indexing_settled, stored_rows
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
FEATURES = [f"f{i}" for i in range(30)]


def _fleet_module():
    spec = importlib.util.spec_from_file_location("demo_fleet", ROOT / "docker" / "demo_fleet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(C: float) -> bytes:
    bunch = load_breast_cancer()
    y = np.array([str(bunch.target_names[t]) for t in bunch.target])  # the demo's classes: the target names
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(bunch.data.astype(np.float32), y)
    return estimator_to_onnx(estimator, feature_names=FEATURES, class_labels=["benign", "malignant"])


def test_a_fleet_instance_serves_logs_labels_and_follows_an_approval(live_server, team, approver, operator, monkeypatch):
    deployment = make_deployment(team=team, by=approver, name="Tumour", slug="tumour-logreg", feature_names=FEATURES,
                                 class_labels=["benign", "malignant"], model=_model(0.1))
    candidate = services.version_register(deployment=deployment, data=_model(1.0), by=operator)
    _, token = services.token_create(deployment=deployment, name="demo fleet", by=None)
    fleet = _fleet_module()
    monkeypatch.setattr(fleet, "LABELS_EVERY", 0.5)
    stop = threading.Event()
    instance = threading.Thread(target=fleet.serve, kwargs={
        "url": live_server.url, "token": token, "slug": "tumour-logreg", "instance": "tumour-1", "rate": 20.0, "stop": stop,
    })
    instance.start()
    try:
        wait_for(lambda: ServingInstance.objects.filter(instance_id="tumour-1", version_told=1).exists(), timeout=20)
        wait_for(lambda: Prediction.objects.filter(deployment=deployment, label_index__isnull=False).exists(), timeout=30)
        services.version_approve(version=candidate, by=approver, comment="ship it")
        wait_for(lambda: ServingInstance.objects.filter(instance_id="tumour-1", version_reported=2).exists(), timeout=30)
    finally:
        stop.set()
        instance.join(30)
    assert not instance.is_alive()
    assert stored_rows(deployment) > 0  # and close() flushed what was left: nothing failed on the way
    indexing_settled(deployment)


def test_a_restarted_instance_logs_new_predictions_not_refused_repeats(live_server, team, approver, caplog):
    deployment = make_deployment(team=team, by=approver, name="Tumour", slug="tumour-logreg", feature_names=FEATURES,
                                 class_labels=["benign", "malignant"], model=_model(0.1))
    _, token = services.token_create(deployment=deployment, name="demo fleet", by=None)
    fleet = _fleet_module()

    def run_until(rows: int) -> None:
        stop = threading.Event()
        instance = threading.Thread(target=fleet.serve, kwargs={
            "url": live_server.url, "token": token, "slug": "tumour-logreg", "instance": "tumour-1", "rate": 20.0,
            "stop": stop,
        })
        instance.start()
        try:
            wait_for(lambda: stored_rows(deployment) >= rows, timeout=30)
        finally:
            stop.set()
            instance.join(30)

    run_until(20)
    first_run = stored_rows(deployment)
    run_until(first_run + 20)  # the same instance name, so the same traffic: only its ids may differ
    assert stored_rows(deployment) >= first_run + 20
    assert not [r.getMessage() for r in caplog.records if "refused a batch" in r.getMessage()]
    indexing_settled(deployment)
