"""dashboard/api/rollouts.py: starting a rollout and the approver's controls over HTTP; lower roles are refused
and nothing changes."""

from __future__ import annotations

import pytest

from monitoring import services
from monitoring.models import AuditEvent, Rollout
from tests.conftest import trained_model
from tests.dashboard.api.helpers import client_for, post_json

STAGES = [{"share": 0.1, "min_minutes": 30, "min_predictions": 500}, {"share": 1.0}]


@pytest.fixture
def candidate(deployment, operator):
    return services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)


def test_an_approver_starts_pauses_resumes_and_aborts_a_rollout(deployment, candidate, approver):
    client = client_for(approver)
    started = post_json(client, "/api/v1/deployments/tumour/versions/2/rollout", {"stages": STAGES, "comment": "canary"})
    assert started.status_code == 201, started.content
    assert started.json() | {"started_at": None, "stage_started_at": None} == {
        "id": started.json()["id"], "candidate": 2, "baseline": 1, "state": "running", "stage": 1,
        "stages": [{"share": 0.1, "min_minutes": 30, "min_predictions": 500},
                   {"share": 1.0, "min_minutes": 0, "min_predictions": 0}],
        "share": 0.1, "started_at": None, "stage_started_at": None, "ended_at": None, "outcome": ""}

    assert post_json(client, "/api/v1/deployments/tumour/rollout/pause", {}).json()["state"] == "paused"
    assert post_json(client, "/api/v1/deployments/tumour/rollout/pause", {}).status_code == 409
    assert post_json(client, "/api/v1/deployments/tumour/rollout/resume", {}).json()["state"] == "running"
    aborted = post_json(client, "/api/v1/deployments/tumour/rollout/abort", {"comment": "wrong data"})
    assert aborted.json()["state"] == "aborted" and "wrong data" in aborted.json()["outcome"]
    listed = client.get("/api/v1/deployments/tumour/rollouts").json()["items"]
    assert [r["state"] for r in listed] == ["aborted"]
    assert list(AuditEvent.objects.filter(object_type="Rollout").order_by("id").values_list("action", flat=True)) == [
        "rollout.start", "rollout.pause", "rollout.resume", "rollout.abort"]


def test_advance_now_from_the_last_stage_but_one_makes_the_candidate_active(deployment, candidate, approver):
    client = client_for(approver)
    post_json(client, "/api/v1/deployments/tumour/versions/2/rollout", {"stages": STAGES, "comment": "canary"})
    advanced = post_json(client, "/api/v1/deployments/tumour/rollout/advance", {"comment": "looks fine"})
    assert advanced.status_code == 200 and advanced.json()["state"] == "completed"
    assert deployment.active_version().number == 2


@pytest.mark.parametrize("who", ["operator", "viewer"])
@pytest.mark.parametrize("action", ["pause", "advance", "abort"])
def test_below_approver_the_controls_are_refused_and_nothing_changes(deployment, candidate, approver, who, action,
                                                                      request):
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)
    events = AuditEvent.objects.count()
    response = post_json(client_for(request.getfixturevalue(who)), f"/api/v1/deployments/tumour/rollout/{action}", {})
    assert response.status_code == 403
    rollout.refresh_from_db()
    assert (rollout.state, rollout.stage) == ("running", 0) and AuditEvent.objects.count() == events


def test_an_outsider_does_not_see_the_deployment_and_starts_nothing(deployment, candidate, outsider):
    response = post_json(client_for(outsider), "/api/v1/deployments/tumour/versions/2/rollout", {})
    assert response.status_code == 404 and not Rollout.objects.exists()


def test_bad_stages_get_a_422_that_says_what_to_fix(deployment, candidate, approver):
    response = post_json(client_for(approver), "/api/v1/deployments/tumour/versions/2/rollout",
                         {"stages": [{"share": 0.2}, {"share": 0.5}], "comment": "canary"})
    assert response.status_code == 422 and "last stage must serve everyone" in response.json()["detail"]
    assert not Rollout.objects.exists()
