"""The settings page's Rollout plan card: approvers edit the stages, the guards and the watch after promotion
(validated in the page's units, audited); everyone else reads it. And the roll-out dialog's one-off stages."""

from __future__ import annotations

from html import unescape

import pytest
from django.urls import reverse

from monitoring import services
from monitoring.models import AuditEvent, Rollout, RolloutPlan
from tests.dashboard.api.helpers import client_for

URL = reverse("deployment-rollout-plan", args=["tumour"])
SETTINGS = reverse("deployment-settings", args=["tumour"])

GOOD = {
    "stage_share": ["5", "25", "100", ""], "stage_minutes": ["10", "20", "", ""],
    "stage_predictions": ["300", "800", "", ""],
    "guard_class_shift_threshold": "0.15", "guard_class_shift_min_rows": "400",
    "guard_score_shift_threshold": "", "guard_labelled_accuracy_alpha": "0.001",
    "watch_minutes": "90", "auto_rollback": "on",
}


def _nothing_written(events_before: int) -> None:
    assert not RolloutPlan.objects.exists()
    assert AuditEvent.objects.count() == events_before


def test_an_approver_saves_the_plan_and_it_is_audited_and_shown_again(deployment, approver):
    client = client_for(approver)

    response = client.post(URL, GOOD)

    assert response.status_code == 302 and response.url.endswith("#rollout-plan")
    plan = RolloutPlan.objects.get(deployment=deployment)
    assert plan.stages == [{"share": 0.05, "min_minutes": 10, "min_predictions": 300},
                           {"share": 0.25, "min_minutes": 20, "min_predictions": 800},
                           {"share": 1.0, "min_minutes": 0, "min_predictions": 0}]
    assert plan.guards == {"class_shift": {"threshold": 0.15, "min_rows": 400}, "labelled_accuracy": {"alpha": 0.001}}
    assert (plan.watch_minutes, plan.auto_rollback, plan.updated_by) == (90, True, approver)
    event = AuditEvent.objects.get(action="rollout_plan.set")
    assert event.actor == approver and event.before is None and event.after["watch_minutes"] == 90
    page = client.get(SETTINGS).content.decode()
    assert "Rollout plan saved" in page
    assert 'name="stage_share" value="5"' in page and 'name="stage_share" value="25"' in page
    assert 'name="guard_class_shift_threshold" value="0.15"' in page
    # A guard left empty shows its default as the placeholder.
    assert 'name="guard_score_shift_threshold" value="" placeholder="0.2"' in page
    assert 'name="auto_rollback" checked' in page and "by alice" in page
    # The CBPE estimate has no significance test: no alpha to set.
    assert 'name="guard_estimated_accuracy_alpha"' not in page and "no test: the threshold is a margin" in page


def test_the_next_roll_out_uses_the_saved_plan(deployment, approver, candidate):
    client_for(approver).post(URL, GOOD)

    client_for(approver).post(f"/d/tumour/versions/{candidate.number}/rollout", {"comment": "canary"})

    rollout = Rollout.objects.get()
    assert rollout.share == 0.05 and rollout.guards["class_shift"]["min_rows"] == 400


@pytest.mark.parametrize(("change", "says"), [
    ({"stage_share": ["10", "50", "", ""]}, "The last stage must be 100 % (it makes the candidate active); add a row of 100 after 50 %."),
    ({"stage_share": ["50", "10", "100", ""]}, "stage 2: each share must be above the previous one"),
    ({"stage_share": ["ten", "50", "100", ""]}, "Stage 1's share must be a number (got 'ten')."),
    ({"stage_share": ["0", "50", "100", ""]}, "Stage 1's share is a per cent of instances, above 0 and at most 100 (got 0)."),
    ({"stage_share": ["", "", "", ""], "stage_minutes": ["", "", "", ""], "stage_predictions": ["", "", "", ""]},
     "Give at least one stage; a single stage of 100 % promotes at once."),
    ({"stage_minutes": ["half an hour", "20", "", ""]}, "Stage 1's minimum minutes must be a whole number"),
    ({"guard_class_shift_min_rows": "10"}, "guard class_shift: the minimum rows must be a whole number from 30"),
    ({"guard_class_shift_threshold": "-1"}, "guard class_shift: the threshold must be a number above 0"),
    ({"guard_score_shift_alpha": "0.5"}, "alpha (the significance level) must be above 0 and at most 0.1"),
    ({"watch_minutes": "99999"}, "The watch period is a whole number of minutes from 0 (no watch) to 10,080"),
])
def test_a_plan_that_makes_no_sense_is_refused_saying_what_to_do_and_nothing_is_written(
    deployment, approver, change, says
):
    events = AuditEvent.objects.count()

    response = client_for(approver).post(URL, GOOD | change)

    assert response.status_code in (400, 422)
    page = unescape(response.content.decode())
    assert 'data-form-errors="rollout-plan"' in page and says in page
    # What was typed stays in the form.
    assert f'name="stage_share" value="{(GOOD | change)["stage_share"][0]}"' in page or not (GOOD | change)["stage_share"][0]
    _nothing_written(events)


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_read_the_plan_and_their_post_is_refused_and_writes_nothing(
    deployment, role, request
):
    user = request.getfixturevalue(role)
    client = client_for(user)
    events = AuditEvent.objects.count()

    page = client.get(SETTINGS).content.decode()
    assert 'id="rollout-plan"' in page and 'data-form="rollout-plan"' not in page
    assert "10 % of instances for at least 30 min and 500 candidate predictions" in page
    assert "Watchkeeper's default plan: nobody has changed it yet." in page
    assert "After promotion the guards keep watching for 60 min; a breach raises a critical alert" in page

    assert client.post(URL, GOOD).status_code == 403
    _nothing_written(events)


def test_the_roll_out_dialog_offers_the_plan_and_its_override_is_used_for_that_rollout_only(
    deployment, approver, candidate
):
    client = client_for(approver)
    page = client.get("/d/tumour/").content.decode()
    assert 'data-stages="override"' in page and 'name="stage_share" value="10"' in page

    response = client.post(f"/d/tumour/versions/{candidate.number}/rollout", {
        "comment": "short canary", "stage_share": ["20", "100", ""], "stage_minutes": ["5", "", ""],
        "stage_predictions": ["50", "", ""],
    })

    assert response.status_code == 302
    rollout = Rollout.objects.get()
    assert rollout.stages == [{"share": 0.2, "min_minutes": 5, "min_predictions": 50},
                              {"share": 1.0, "min_minutes": 0, "min_predictions": 0}]
    assert services.rollout_plan_of(deployment).stages[0]["share"] == 0.1  # the plan itself is unchanged


def test_an_override_that_makes_no_sense_is_refused_beside_the_stages_and_nothing_starts(
    deployment, approver, candidate
):
    events = AuditEvent.objects.count()

    response = client_for(approver).post(f"/d/tumour/versions/{candidate.number}/rollout", {
        "comment": "canary", "stage_share": ["20", "60", ""], "stage_minutes": ["5", "5", ""],
        "stage_predictions": ["", "", ""],
    })

    assert response.status_code == 422
    page = response.content.decode()
    assert 'data-error="stages"' in page and "add a row of 100 after 60 %" in page
    assert 'name="stage_share" value="60"' in page  # as typed
    assert not Rollout.objects.exists() and AuditEvent.objects.count() == events
    candidate.refresh_from_db()
    assert candidate.status == "candidate" and candidate.decided_by is None
