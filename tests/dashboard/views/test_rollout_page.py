"""The rollout on the deployment page: stage, share, guard checks and their chart, past rollouts, and the
approver's buttons (server-side: an operator's POST is refused and changes nothing)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from monitoring import services
from monitoring.models import AuditEvent, Rollout
from monitoring.rollout.guards import GuardResult
from tests.conftest import trained_model
from tests.dashboard.api.helpers import client_for

STAGES = [{"share": 0.1, "min_minutes": 30, "min_predictions": 500}, {"share": 0.5}, {"share": 1.0}]


@pytest.fixture
def rollout(deployment, operator, approver):
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)
    services.rollout_checks_record(rollout=rollout, at=timezone.now(), results=[
        GuardResult("class_shift", "pass", 0.04, 0.1, 0.2, 300, 2700, "chi-square test of homogeneity"),
        GuardResult("labelled_accuracy", "wait", None, 0.03, None, 10, 80, "two-proportion z-test"),
    ])
    return rollout


def test_the_page_shows_the_stage_the_share_and_each_guard_against_its_threshold(rollout, approver):
    page = client_for(approver).get("/d/tumour/").content.decode()
    assert 'data-state="running" data-stage="1"' in page
    assert "10 %</span> of instances serve the candidate" in page
    assert 'data-guard="class_shift"' in page and "0.040" in page and "Too few rows: waiting" in page
    assert 'data-chart="rollout-guards"' in page
    assert 'data-action="rollout-pause"' in page and 'data-action="rollout-abort"' in page


def test_a_viewer_sees_the_rollout_without_its_buttons(rollout, viewer):
    page = client_for(viewer).get("/d/tumour/").content.decode()
    assert 'data-stage="1"' in page and 'data-action="rollout-pause"' not in page


def test_an_approver_pauses_and_aborts_from_the_page_and_history_shows_how_it_ended(rollout, approver):
    client = client_for(approver)
    assert client.post("/d/tumour/rollout/pause", {"comment": "weekend"}).status_code == 302
    assert Rollout.objects.get(pk=rollout.pk).state == "paused"
    client.post("/d/tumour/rollout/abort", {"comment": "not now"})
    page = client.get("/d/tumour/").content.decode()
    assert 'data-table="rollout-history"' in page and "aborted by alice: not now" in page
    assert 'data-empty="rollout"' in page


def test_an_operators_post_is_refused_and_changes_nothing(rollout, operator):
    events = AuditEvent.objects.count()
    assert client_for(operator).post("/d/tumour/rollout/advance").status_code == 403
    rollout.refresh_from_db()
    assert (rollout.state, rollout.stage) == ("running", 0) and AuditEvent.objects.count() == events


def test_roll_out_on_a_candidate_starts_the_deployments_plan(deployment, operator, approver):
    services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)
    response = client_for(approver).post("/d/tumour/versions/2/rollout", {"comment": "canary"})
    assert response.status_code == 302
    rollout = Rollout.objects.get()
    assert rollout.state == "running" and rollout.share == 0.1 and rollout.stages[0]["min_minutes"] == 30


def test_a_completed_rollout_says_how_long_the_guards_keep_watching_and_a_long_outcome_is_kept_whole(
    rollout, approver
):
    services.rollout_advance(rollout=rollout, from_stage=0, by=approver, reason="enough")
    done = services.rollout_advance(rollout=Rollout.objects.get(pk=rollout.pk), from_stage=1, by=approver,
                                    reason="x" * 500)
    assert done.state == "completed" and done.watch_until is not None
    page = client_for(approver).get("/d/tumour/").content.decode()
    assert f"the guards watch v{done.candidate.number} until " in page and "a breach raises a critical alert" in page
    Rollout.objects.filter(pk=done.pk).update(outcome="rolled back by guard " + "y" * 400 + " p=1.2e-228")
    page = client_for(approver).get("/d/tumour/").content.decode()
    assert "p=1.2e-228</td>" in page or "p=1.2e-228<div" in page
