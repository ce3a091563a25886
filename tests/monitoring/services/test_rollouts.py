"""monitoring/services/rollouts.py on real Postgres: starting a rollout, what each instance is told to serve,
stage transitions claimed by conditional update, pause/resume, abort, and the audit trail."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from monitoring import selectors, services
from monitoring.models import AuditEvent, ModelVersion, Rollout
from monitoring.rollout.assignment import BUCKETS, instance_bucket
from tests.conftest import trained_model

STAGES = [{"share": 0.1, "min_minutes": 0, "min_predictions": 0},
          {"share": 0.5, "min_minutes": 0, "min_predictions": 0},
          {"share": 1.0, "min_minutes": 0, "min_predictions": 0}]
INSTANCES = [f"pod-{i}" for i in range(1000)]


@pytest.fixture
def candidate(deployment, operator):
    return services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)


def _served(deployment) -> dict[int, int]:
    state = selectors.serving_state(deployment=deployment)
    counts: dict[int, int] = {}
    for instance in INSTANCES:
        version, _ = state.for_instance(deployment.pk, instance)
        counts[version.number] = counts.get(version.number, 0) + 1
    return counts


def test_a_rollout_serves_its_stage_share_and_completes_through_every_stage(deployment, candidate, approver):
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)

    assert rollout.state == "running" and rollout.stage == 0
    served = _served(deployment)
    assert 70 <= served[2] <= 130 and served[1] + served[2] == 1000
    canaries = {i for i in INSTANCES if selectors.serving_state(deployment=deployment).for_instance(deployment.pk, i)[0].number == 2}

    rollout = services.rollout_advance(rollout=rollout, from_stage=0, by=None, reason="guards passed")
    state = selectors.serving_state(deployment=deployment)
    at_half = {i for i in INSTANCES if state.for_instance(deployment.pk, i)[0].number == 2}
    assert canaries <= at_half and 440 <= len(at_half) <= 560  # no instance flaps back

    rollout = services.rollout_advance(rollout=rollout, from_stage=1, by=None, reason="guards passed")
    assert rollout.state == "completed" and rollout.ended_at is not None
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.ACTIVE
    assert deployment.rollback_target().number == 1  # the previous one is kept for rollback
    assert _served(deployment) == {2: 1000}
    actions = list(AuditEvent.objects.filter(object_type="Rollout").order_by("id").values_list("action", flat=True))
    assert actions == ["rollout.start", "rollout.advance", "rollout.complete"]


def test_a_small_live_fleet_serves_exactly_its_stage_share_and_a_new_instance_goes_by_its_hash(deployment, candidate,
                                                                                                approver):
    # A fleet the hash alone puts off its share: three of the ten fall under 10 % of the buckets.
    names = [f"node-{i}" for i in range(10_000)]
    low = [i for i in names if instance_bucket(deployment.pk, i) < BUCKETS // 10][:3]
    fleet = low + [i for i in names if instance_bucket(deployment.pk, i) >= BUCKETS // 10][:7]
    for instance in fleet:
        services.serving_instance_seen(deployment=deployment, instance_id=instance, reported=1, told=1)
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)

    state = selectors.serving_state(deployment=deployment)
    at_tenth = {i for i in fleet if state.for_instance(deployment.pk, i)[0].number == 2}
    services.rollout_advance(rollout=rollout, from_stage=0, by=None, reason="guards passed")
    state = selectors.serving_state(deployment=deployment)
    at_half = {i for i in fleet if state.for_instance(deployment.pk, i)[0].number == 2}

    assert len(at_tenth) == 1 and len(at_half) == 5 and at_tenth <= at_half
    assert at_tenth == {min(fleet, key=lambda i: instance_bucket(deployment.pk, i))}
    newcomer = next(f"new-{i}" for i in range(10_000) if instance_bucket(deployment.pk, f"new-{i}") < BUCKETS // 2)
    assert state.for_instance(deployment.pk, newcomer)[0].number == 2  # not ranked yet: its hash decides


def test_the_etag_changes_only_for_the_instances_that_change_version(deployment, candidate, approver):
    before = selectors.serving_state(deployment=deployment)
    services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)
    after = selectors.serving_state(deployment=deployment)
    for instance in INSTANCES[:200]:
        old_version, old_tag = before.for_instance(deployment.pk, instance)
        new_version, new_tag = after.for_instance(deployment.pk, instance)
        assert (old_tag != new_tag) == (old_version.number != new_version.number)


def test_promote_now_is_a_plan_of_one_stage(deployment, candidate, approver):
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=[{"share": 1.0}])
    assert rollout.state == "completed"
    assert deployment.active_version().number == 2


def test_an_abort_puts_every_instance_back_and_rejects_the_candidate(deployment, candidate, approver):
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)
    rollout = services.rollout_abort(rollout=rollout, by=approver, reason="wrong features")

    assert rollout.state == "aborted" and "aborted by alice: wrong features" in rollout.outcome
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.REJECTED and "wrong features" in candidate.retired_reason
    assert _served(deployment) == {1: 1000}
    with pytest.raises(services.Conflict):
        services.rollout_advance(rollout=rollout, from_stage=0, by=approver)


def test_pause_holds_the_stage_and_resume_lets_it_go_on(deployment, candidate, approver):
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)
    rollout = services.rollout_pause(rollout=rollout, by=approver)
    assert rollout.state == "paused" and rollout.share == 0.1
    with pytest.raises(services.Conflict):
        services.rollout_pause(rollout=rollout, by=approver)
    rollout = services.rollout_resume(rollout=rollout, by=approver)
    assert rollout.state == "running"
    assert AuditEvent.objects.filter(action__in=["rollout.pause", "rollout.resume"]).count() == 2


def test_a_second_rollout_and_bad_stages_are_refused_and_write_nothing(deployment, candidate, approver, operator):
    with pytest.raises(services.ValidationFailed, match="last stage must serve everyone"):
        services.rollout_start(version=candidate, by=approver, comment="canary", stages=[{"share": 0.1}, {"share": 0.5}])
    with pytest.raises(services.ValidationFailed, match="above the previous"):
        services.rollout_start(version=candidate, by=approver, comment="canary", stages=[{"share": 0.5}, {"share": 0.2}, {"share": 1}])
    assert not Rollout.objects.exists()
    services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)
    other = services.version_register(deployment=deployment, data=trained_model(C=0.2)[0], by=operator)
    events = AuditEvent.objects.count()
    with pytest.raises(services.Conflict, match="already rolling out"):
        services.rollout_start(version=other, by=approver, comment="canary", stages=STAGES)
    assert Rollout.objects.count() == 1 and AuditEvent.objects.count() == events


def test_whoever_uploaded_the_candidate_cannot_roll_it_out(deployment, candidate, operator):
    with pytest.raises(services.NotPermitted):
        services.rollout_start(version=candidate, by=operator, comment="canary", stages=STAGES)
    assert not Rollout.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_transitions_from_the_same_stage_one_wins(deployment, candidate, approver):
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def advance():
        try:
            barrier.wait()
            services.rollout_advance(rollout=rollout, from_stage=0, by=None, reason="race")
            outcomes.append("advanced")
        except services.Conflict:
            outcomes.append("conflict")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=advance) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["advanced", "conflict"]
    rollout.refresh_from_db()
    assert rollout.stage == 1
    assert AuditEvent.objects.filter(action="rollout.advance").count() == 1
    assert connection.vendor == "postgresql"


def _fleet_of(deployment, names: list[str]) -> None:
    for name in names:
        services.serving_instance_seen(deployment=deployment, instance_id=name, reported=1, told=1)


def test_a_small_fleet_gets_a_canary_at_every_stage_that_only_grows(deployment, candidate, approver):
    # Two instances whose hashes both fall above 10 % and 50 % would never see the candidate by the hash alone.
    names = [n for n in (f"web-{i}" for i in range(200))
             if instance_bucket(deployment.pk, n) >= 0.5 * BUCKETS][:2]
    _fleet_of(deployment, names)
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)

    def on_candidate() -> set[str]:
        state = selectors.serving_state(deployment=deployment)
        return {n for n in names if state.for_instance(deployment.pk, n)[0].number == 2}

    first = on_candidate()
    assert len(first) == 1  # ceil(10 % of 2)
    services.rollout_advance(rollout=rollout, from_stage=0, by=None, reason="guards passed")
    assert on_candidate() == first  # ceil(50 % of 2) is still one, the same one
    assert first == {min(names, key=lambda n: instance_bucket(deployment.pk, n))}


def test_no_live_instance_means_no_ranked_canary(deployment, candidate, approver):
    services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)
    assert selectors.serving_state(deployment=deployment).canaries == frozenset()
