"""Rollout guards on the real stack: a simulated fleet polls the serving contract, runs the version it is told
to with onnxruntime and logs its predictions tagged with that version; a real Celery worker checks the guards."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from django.test import Client
from django.utils import timezone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dashboard.serving_watch import watch
from monitoring import services
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import Alert, AuditEvent, ModelVersion, Rollout, RolloutCheck
from monitoring.rollout.guards import GUARD_NAMES
from monitoring.runtime import ModelRunner
from monitoring.services.serving import _forget_seen
from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model, wait_for
from tests.dashboard.api.helpers import bearer, post_json
from workers.rollout import check_rollout, check_rollouts
from workers.tasks import check_rollouts_task

FLEET = [f"pod-{i}" for i in range(100)]
ROWS_PER_INSTANCE = 30
STAGES = [{"share": 0.1, "min_minutes": 0, "min_predictions": 60},
          {"share": 0.5, "min_minutes": 0, "min_predictions": 60},
          {"share": 1.0, "min_minutes": 0, "min_predictions": 0}]
GUARDS = {name: {"min_rows": 60} for name in ("class_shift", "score_shift", "estimated_accuracy")}


@pytest.fixture(scope="module", autouse=True)
def _watch_stopped_after():
    yield
    watch.stop()


@cache
def single_class_model() -> bytes:
    """A deliberately bad candidate: trained on labels that are nearly all "1", so it says "1" to everything."""
    X_train, _, _, _ = breast_cancer_split()
    y = np.ones(len(X_train), dtype=int)
    y[:5] = 0
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=1e-6)).fit(X_train, y)
    return estimator_to_onnx(estimator, feature_names=FEATURES, class_labels=CLASSES)


@pytest.fixture
def token(deployment, operator) -> str:
    _forget_seen()
    return services.token_create(deployment=deployment, name="fleet", by=operator)[1]


def _runner(version: ModelVersion) -> ModelRunner:
    return ModelRunner(services.blob_read(version.sha256), label_output=version.label_output,
                       probability_output=version.probability_output, class_labels=version.class_labels)


def _fleet_round(deployment, token: str, round_no: int) -> dict[int, int]:
    """Every instance asks what to serve, serves ROWS_PER_INSTANCE rows with it and logs them. {version: instances}."""
    _, _, X_test, _ = breast_cancer_split()
    runners: dict[int, ModelRunner] = {}
    served: dict[int, int] = {}
    client = Client()
    for n, instance in enumerate(FLEET):
        answer = client.get(f"/api/v1/deployments/{deployment.slug}/serving", {"instance": instance}, **bearer(token))
        assert answer.status_code == 200, answer.content
        number = answer.json()["version"]
        served[number] = served.get(number, 0) + 1
        if number not in runners:
            runners[number] = _runner(deployment.versions.get(number=number))
        # Each instance sees a random draw of the same traffic: candidate and active face the same population.
        rows = X_test[np.random.default_rng([round_no, n]).choice(len(X_test), ROWS_PER_INSTANCE)]
        out = runners[number].predict(rows)
        now = timezone.now().isoformat()
        batch = [{"id": f"r{round_no}-{instance}-{i}", "timestamp": now, "features": dict(zip(FEATURES, map(float, x))),
                  "predicted_label": str(label), "probabilities": [float(p) for p in proba]}
                 for i, (x, label, proba) in enumerate(zip(rows, out.labels, out.probabilities))]
        response = post_json(client, f"/api/v1/deployments/{deployment.slug}/predictions",
                             {"predictions": batch, "version": number}, **bearer(token))
        assert response.status_code in (200, 201, 202), response.content
    return served


def _rollout_of(candidate, approver) -> Rollout:
    services.rollout_plan_set(deployment=candidate.deployment, by=approver, stages=STAGES, guards=GUARDS)
    return services.rollout_start(version=candidate, by=approver, comment="canary")


def _checked_by_worker(rollout: Rollout, after_checks: int) -> Rollout:
    check_rollouts_task.delay()
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).last_checked_at is not None
             and RolloutCheck.objects.filter(rollout=rollout).count() > after_checks, timeout=60)
    return Rollout.objects.get(pk=rollout.pk)


@pytest.mark.django_db(transaction=True)
def test_a_good_candidate_advances_through_every_stage_and_becomes_active(
    celery_worker_process, deployment, operator, approver, token
):
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.8)[0], by=operator)
    rollout = _rollout_of(candidate, approver)

    served = _fleet_round(deployment, token, 0)
    assert 2 <= served.get(2, 0) <= 20, served  # about a tenth of the fleet
    rollout = _checked_by_worker(rollout, 0)
    assert (rollout.state, rollout.stage) == ("running", 1), [(c.guard, c.verdict, c.value) for c in RolloutCheck.objects.all()]

    served = _fleet_round(deployment, token, 1)
    assert 35 <= served.get(2, 0) <= 65, served
    rollout = _checked_by_worker(rollout, len(GUARD_NAMES))  # the first check's rows
    assert rollout.state == "completed", [(c.stage, c.guard, c.verdict, c.n_candidate, c.n_active) for c in RolloutCheck.objects.all()]
    assert deployment.active_version().number == 2
    assert _fleet_round(deployment, token, 2) == {2: len(FLEET)}
    assert list(AuditEvent.objects.filter(object_type="Rollout").order_by("id").values_list("action", flat=True)) == [
        "rollout.start", "rollout.advance", "rollout.complete"]


@pytest.mark.django_db(transaction=True)
def test_a_single_class_candidate_is_aborted_at_the_first_stage_and_nobody_serves_it_after(
    celery_worker_process, deployment, operator, approver, token
):
    candidate = services.version_register(deployment=deployment, data=single_class_model(), by=operator)
    rollout = _rollout_of(candidate, approver)

    _fleet_round(deployment, token, 0)
    rollout = _checked_by_worker(rollout, 0)

    assert rollout.state == "aborted" and rollout.stage == 0, [
        (c.guard, c.verdict, c.value, c.n_candidate, c.figures) for c in RolloutCheck.objects.all()]
    assert rollout.outcome.startswith("rolled back by guard class_shift")
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.REJECTED and "rolled back by guard" in candidate.retired_reason
    assert _fleet_round(deployment, token, 1) == {1: len(FLEET)}
    alert = Alert.objects.get(kind=Alert.Kind.ROLLOUT_GUARD)
    assert alert.severity == "critical" and "class_shift" in alert.title
    assert alert.figures["guards"][0]["guard"] == "class_shift" and alert.figures["guards"][0]["value"] > 0.1
    assert AuditEvent.objects.filter(action="rollout.abort", actor_label="worker").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_stage_with_too_few_rows_waits_instead_of_deciding(deployment, operator, approver, token):
    candidate = services.version_register(deployment=deployment, data=single_class_model(), by=operator)
    rollout = _rollout_of(candidate, approver)
    client = Client()
    now = timezone.now().isoformat()
    rows = [{"id": f"few-{i}", "timestamp": now, "features": dict.fromkeys(FEATURES, 1.0), "predicted_label": "1"}
            for i in range(10)]
    post_json(client, f"/api/v1/deployments/{deployment.slug}/predictions", {"predictions": rows, "version": 2},
              **bearer(token))

    outcome = check_rollout(rollout=Rollout.objects.select_related("deployment", "candidate", "baseline").get(pk=rollout.pk),
                            now=timezone.now())

    assert outcome == "waiting"
    rollout.refresh_from_db()
    assert (rollout.state, rollout.stage) == ("running", 0)
    assert set(RolloutCheck.objects.values_list("verdict", flat=True)) == {"wait"}


def _log(deployment, token: str, version: int, prefix: str, labels: list[str]) -> None:
    now = timezone.now().isoformat()
    rows = [{"id": f"{prefix}-{i}", "timestamp": now, "features": dict.fromkeys(FEATURES, 1.0), "predicted_label": label}
            for i, label in enumerate(labels)]
    response = post_json(Client(), f"/api/v1/deployments/{deployment.slug}/predictions",
                         {"predictions": rows, "version": version}, **bearer(token))
    assert response.status_code in (200, 201, 202), response.content


@pytest.mark.parametrize("auto_rollback", [True, False])
def test_after_promotion_a_breach_rolls_back_when_opted_in_and_alerts_otherwise(
    deployment, operator, approver, token, auto_rollback
):
    services.rollout_plan_set(deployment=deployment, by=approver, stages=[{"share": 0.5}, {"share": 1.0}],
                              guards=GUARDS, watch_minutes=60, auto_rollback=auto_rollback)
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.8)[0], by=operator)
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary")
    _log(deployment, token, 1, "before", ["0", "1"] * 100)  # v1's traffic during the rollout
    rollout = services.rollout_advance(rollout=rollout, from_stage=0, by=approver, reason="by hand")
    assert rollout.state == "completed" and rollout.watch_until is not None
    _log(deployment, token, 2, "after", ["1"] * 200)  # the promoted version now says "1" to everything

    outcomes = check_rollouts(now=timezone.now())

    assert outcomes[rollout.pk] == ("rolled_back" if auto_rollback else "alerted")
    assert deployment.active_version().number == (1 if auto_rollback else 2)
    alert = Alert.objects.get(kind=Alert.Kind.ROLLOUT_GUARD)
    assert alert.severity == "critical" and alert.figures["guards"][0]["guard"] == "class_shift"
    assert check_rollouts(now=timezone.now()) == {}  # acted once: the watch is over
