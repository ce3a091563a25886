"""The latency_p95 and error_rate guards in a rollout: the calls reach the guards through the ingestion API (as the
serving client sends them), a breach aborts at the first stage or, after promotion, rolls back; too few calls wait."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.test import Client
from django.utils import timezone

from monitoring import services
from monitoring.models import Alert, ModelVersion, Rollout, RolloutCheck
from monitoring.services.serving import _forget_seen
from tests.conftest import FEATURES, trained_model
from tests.dashboard.api.helpers import bearer, client_for, post_json
from workers.rollout import check_rollout, check_rollouts

STAGES = [{"share": 0.1, "min_minutes": 0, "min_predictions": 100},
          {"share": 0.5, "min_minutes": 0, "min_predictions": 100},
          {"share": 1.0}]
GUARDS = {"class_shift": {"min_rows": 100}, "latency_p95": {"min_rows": 100}, "error_rate": {"min_rows": 100}}
RNG = np.random.default_rng(14)


@pytest.fixture
def token(deployment, operator) -> str:
    _forget_seen()
    return services.token_create(deployment=deployment, name="fleet", by=operator)[1]


def _send(deployment, token: str, *, version: int, prefix: str, rows: int, calls: int, errors: int = 0,
          median_ms: float = 3.0) -> None:
    """`rows` predictions (alternating classes) made by `calls` predict calls, `errors` of which failed."""
    now = timezone.now().isoformat()
    body: dict = {"version": version, "instance": f"pod-{prefix}", "calls": calls, "errors": errors,
                  "latency_us": (median_ms * 1000 * np.exp(RNG.normal(0, 0.2, calls - errors))).round().tolist(),
                  "predictions": [{"id": f"{prefix}-{i}", "timestamp": now, "features": dict.fromkeys(FEATURES, 1.0),
                                   "predicted_label": str(i % 2)} for i in range(rows)]}
    response = post_json(Client(), f"/api/v1/deployments/{deployment.slug}/predictions", body, **bearer(token))
    assert response.status_code == 201, response.content


def _rollout(deployment, operator, approver, **plan) -> Rollout:
    services.rollout_plan_set(deployment=deployment, by=approver, stages=STAGES, guards=GUARDS, **plan)
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.8)[0], by=operator)
    return services.rollout_start(version=candidate, by=approver, comment="canary")


def _check(rollout: Rollout) -> str:
    return check_rollout(rollout=Rollout.objects.select_related("deployment", "candidate", "baseline").get(pk=rollout.pk),
                         now=timezone.now())


def _latest(guard: str) -> RolloutCheck:
    return RolloutCheck.objects.filter(guard=guard).latest("id")


def test_a_candidate_whose_calls_fail_is_aborted_by_the_error_rate_guard(deployment, operator, approver, token):
    rollout = _rollout(deployment, operator, approver)
    _send(deployment, token, version=1, prefix="a", rows=600, calls=600, errors=3)
    _send(deployment, token, version=2, prefix="c", rows=150, calls=150)
    response = post_json(Client(), f"/api/v1/deployments/{deployment.slug}/predictions",
                         {"version": 2, "predictions": [], "calls": 60, "errors": 60}, **bearer(token))
    assert response.status_code == 201  # every call of another instance failed: a report without rows

    assert _check(rollout) == "aborted"

    rollout.refresh_from_db()
    assert rollout.state == "aborted" and rollout.outcome.startswith("rolled back by guard error_rate")
    check = _latest("error_rate")
    assert (check.verdict, check.n_candidate, check.n_active) == ("breach", 210, 600)
    assert check.value == pytest.approx(60 / 210 - 3 / 600)
    assert _latest("class_shift").verdict == "pass"  # the rows it did log look like the active version's
    assert ModelVersion.objects.get(pk=rollout.candidate_id).status == ModelVersion.Status.REJECTED
    alert = Alert.objects.get(kind=Alert.Kind.ROLLOUT_GUARD)
    assert [g["guard"] for g in alert.figures["guards"]] == ["error_rate"]


def test_a_candidate_three_times_slower_is_aborted_by_the_latency_guard(deployment, operator, approver, token):
    rollout = _rollout(deployment, operator, approver)
    _send(deployment, token, version=1, prefix="a", rows=600, calls=600)
    _send(deployment, token, version=2, prefix="c", rows=200, calls=200, median_ms=9.0)

    assert _check(rollout) == "aborted"

    check = _latest("latency_p95")
    assert check.verdict == "breach" and check.value == pytest.approx(3.0, rel=0.2)
    assert check.figures["active_p95_ms"] == pytest.approx(3.0 * np.exp(1.645 * 0.2), rel=0.15)
    assert Rollout.objects.get(pk=rollout.pk).outcome.startswith("rolled back by guard latency_p95")


def test_a_candidate_as_fast_and_reliable_advances_with_both_guards_passing(deployment, operator, approver, token):
    rollout = _rollout(deployment, operator, approver)
    _send(deployment, token, version=1, prefix="a", rows=600, calls=600, errors=6)
    _send(deployment, token, version=2, prefix="c", rows=200, calls=200, errors=2)

    assert _check(rollout) == "advanced"

    assert {_latest("latency_p95").verdict, _latest("error_rate").verdict} == {"pass"}
    assert Rollout.objects.get(pk=rollout.pk).stage == 1


def test_failures_on_too_few_calls_wait_instead_of_aborting(deployment, operator, approver, token):
    rollout = _rollout(deployment, operator, approver)
    _send(deployment, token, version=1, prefix="a", rows=600, calls=600)
    _send(deployment, token, version=2, prefix="c", rows=20, calls=40, errors=20, median_ms=30.0)

    assert _check(rollout) == "waiting"

    assert {_latest("latency_p95").verdict, _latest("error_rate").verdict} == {"wait"}
    assert Rollout.objects.get(pk=rollout.pk).state == "running"
    assert not Alert.objects.filter(kind=Alert.Kind.ROLLOUT_GUARD).exists()


def test_batches_from_older_clients_leave_both_guards_waiting_and_the_stage_still_passes(
    deployment, operator, approver, token
):
    rollout = _rollout(deployment, operator, approver)
    for version, prefix, n in ((1, "a", 600), (2, "c", 200)):
        rows = [{"id": f"{prefix}-{i}", "timestamp": timezone.now().isoformat(), "features": dict.fromkeys(FEATURES, 1.0),
                 "predicted_label": str(i % 2)} for i in range(n)]
        post_json(Client(), f"/api/v1/deployments/{deployment.slug}/predictions",
                  {"version": version, "predictions": rows}, **bearer(token))

    assert _check(rollout) == "advanced"  # neither guard is required: no calls reported is not a reason to stop
    assert {_latest("latency_p95").verdict, _latest("error_rate").verdict} == {"wait"}


@pytest.mark.parametrize("auto_rollback", [True, False])
def test_after_promotion_failing_calls_roll_back_when_opted_in_and_alert_otherwise(
    deployment, operator, approver, token, auto_rollback
):
    rollout = _rollout(deployment, operator, approver, watch_minutes=60, auto_rollback=auto_rollback)
    _send(deployment, token, version=1, prefix="before", rows=400, calls=400, errors=2)  # v1 during the rollout
    for stage in (0, 1):
        rollout = services.rollout_advance(rollout=rollout, from_stage=stage, by=approver, reason="by hand")
    assert rollout.state == "completed"
    _send(deployment, token, version=2, prefix="after", rows=300, calls=400, errors=100)  # promoted, then failing

    outcomes = check_rollouts(now=timezone.now())

    assert outcomes[rollout.pk] == ("rolled_back" if auto_rollback else "alerted")
    assert deployment.active_version().number == (1 if auto_rollback else 2)
    alert = Alert.objects.get(kind=Alert.Kind.ROLLOUT_GUARD)
    assert [g["guard"] for g in alert.figures["guards"]] == ["error_rate"]
    assert check_rollouts(now=timezone.now()) == {}


def test_the_call_guards_are_drawn_on_the_rollout_cards_chart(deployment, operator, approver, token, viewer):
    rollout = _rollout(deployment, operator, approver)
    _send(deployment, token, version=1, prefix="a", rows=600, calls=600)
    _send(deployment, token, version=2, prefix="c", rows=150, calls=150)
    assert _check(rollout) == "advanced"

    page = client_for(viewer).get(f"/d/{deployment.slug}/").content.decode()

    assert 'data-guard="latency_p95"' in page and 'data-guard="error_rate"' in page
    marker = '<script type="application/json" id="chart-rollout-guards-figure">'
    figure = json.loads(page.split(marker, 1)[1].split("</script>", 1)[0])
    traces = {trace["name"]: trace for trace in figure["data"]}
    assert {"latency p95", "error rate"} <= set(traces)
    latency = _latest("latency_p95")
    assert traces["latency p95"]["y"] == [pytest.approx(latency.value / latency.threshold)]
