"""dashboard/views/versions.py: approving, rejecting and rolling back, and uploading a model."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from monitoring import services
from monitoring.models import (
    AuditEvent,
    ModelVersion,
)
from tests.conftest import trained_model
from tests.dashboard.views.helpers import _audit_count, _blobs, _evaluate

# ---------------------------------------------------------------- approval


def test_a_viewer_cannot_approve_a_candidate_and_nothing_changes(client, viewer, candidate):
    client.force_login(viewer)
    before = _audit_count()

    response = client.post(reverse("version-approve", args=["tumour", candidate.number]), {"comment": "lgtm"})

    assert response.status_code == 403
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE
    assert candidate.deployment.active_version().number == 1
    assert _audit_count() == before


def test_an_operator_cannot_approve_or_roll_back(client, operator, candidate):
    client.force_login(operator)
    before = _audit_count()

    assert client.post(reverse("version-approve", args=["tumour", candidate.number])).status_code == 403
    assert client.post(reverse("rollback", args=["tumour"])).status_code == 403
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE
    assert _audit_count() == before


def test_without_javascript_approving_is_a_form_page_that_asks_for_a_reason_and_changes_nothing(client, approver, candidate):
    client.force_login(approver)
    before = _audit_count()

    response = client.get(reverse("version-approve", args=["tumour", candidate.number]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Approve v2 of Tumour classifier?" in page and 'name="comment"' in page and ">Approve v2</button>" in page
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE
    assert _audit_count() == before


@pytest.mark.parametrize("url_name", ["version-approve", "version-reject"])
def test_a_decision_without_a_reason_is_refused_with_the_form_again_and_nothing_written(client, approver, candidate, url_name):
    client.force_login(approver)
    before = _audit_count()

    response = client.post(reverse(url_name, args=["tumour", candidate.number]), {"comment": "  "})

    assert response.status_code == 422
    assert "Say why you" in response.content.decode() and 'data-error="comment"' in response.content.decode()
    candidate.refresh_from_db()
    assert (candidate.status, candidate.decided_by, candidate.decision_comment) == (ModelVersion.Status.CANDIDATE, None, "")
    assert candidate.deployment.active_version().number == 1
    assert _audit_count() == before


def test_a_rollback_without_a_reason_is_refused_and_nothing_is_written(client, approver, candidate):
    services.version_approve(version=candidate, by=approver, comment="better F1")
    client.force_login(approver)
    before = _audit_count()

    response = client.post(reverse("rollback", args=["tumour"]), {"comment": ""})

    assert response.status_code == 422
    assert "Say why you roll back to v1" in response.content.decode()
    assert candidate.deployment.active_version().number == 2
    assert _audit_count() == before


def test_the_rollback_button_dialog_and_form_page_name_the_version_they_restore(client, approver, candidate):
    services.version_approve(version=candidate, by=approver, comment="better F1")
    client.force_login(approver)

    deployment_page = client.get("/d/tumour/").content.decode()
    form_page = client.get(reverse("rollback", args=["tumour"])).content.decode()

    assert deployment_page.count("Roll back to v1") == 2  # the button, and the dialog's confirm button
    assert "Roll Tumour classifier back to v1?" in deployment_page and "<dialog" in deployment_page
    assert "Roll Tumour classifier back to v1?" in form_page and ">Roll back to v1</button>" in form_page


def test_a_decision_returns_to_the_page_it_was_taken_on(client, approver, candidate):
    client.force_login(approver)
    compare = reverse("version-compare", args=["tumour", candidate.number])

    response = client.post(reverse("version-approve", args=["tumour", candidate.number]), {"comment": "ok", "next": compare})

    assert response.status_code == 302 and response["Location"] == compare


def test_an_approver_approves_a_candidate_and_the_audit_log_records_it(client, approver, candidate):
    client.force_login(approver)

    response = client.post(
        reverse("version-approve", args=["tumour", candidate.number]), {"comment": "Better recall"}, follow=True
    )

    assert response.status_code == 200
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.ACTIVE
    assert candidate.decided_by == approver
    assert candidate.deployment.versions.get(number=1).status == ModelVersion.Status.RETIRED
    event = AuditEvent.objects.get(action="version.approve", object_id=str(candidate.pk))
    assert (event.actor, event.comment) == (approver, "Better recall")
    assert event.after["active_version"] == candidate.number
    assert f"v{candidate.number} is now the active version." in response.content.decode()

    audit_page = client.get(reverse("audit", args=["tumour"])).content.decode()
    assert "version.approve" in audit_page and "Better recall" in audit_page


def test_approving_a_version_that_is_not_a_candidate_shows_the_services_message(client, approver, deployment):
    client.force_login(approver)

    response = client.post(reverse("version-approve", args=["tumour", 1]), {"comment": "again"}, follow=True)

    assert "v1 is active; only a candidate can be approved." in response.content.decode()
    assert deployment.active_version().number == 1


def test_an_approver_rejects_a_candidate_with_a_comment(client, approver, candidate):
    client.force_login(approver)

    client.post(reverse("version-reject", args=["tumour", candidate.number]), {"comment": "Worse F1"})

    candidate.refresh_from_db()
    assert (candidate.status, candidate.decision_comment) == (ModelVersion.Status.REJECTED, "Worse F1")
    assert candidate.deployment.active_version().number == 1


def test_an_approver_rolls_back_to_the_previous_version(client, approver, candidate):
    services.version_approve(version=candidate, by=approver, comment="ship it")
    client.force_login(approver)

    response = client.post(reverse("rollback", args=["tumour"]), {"comment": "latency regression"}, follow=True)

    assert candidate.deployment.active_version().number == 1
    assert "Rolled back: v1 is serving again." in response.content.decode()
    assert AuditEvent.objects.filter(action="deployment.rollback", comment="latency regression").exists()


def test_after_a_rollback_each_version_says_why_it_left_production(client, approver, candidate):
    services.version_approve(version=candidate, by=approver, comment="better F1")
    services.deployment_rollback(deployment=candidate.deployment, by=approver, comment="latency regression")
    client.force_login(approver)

    page = client.get("/d/tumour/").content.decode()

    candidate.refresh_from_db()
    assert (candidate.status, candidate.retired_reason) == ("retired", "rolled back to v1: latency regression")
    assert "retired by alice: rolled back to v1: latency regression" in page
    assert "retired by alice: better F1" not in page and "<q>better F1</q>" not in page
    v1 = candidate.deployment.versions.get(number=1)
    assert (v1.status, v1.retired_reason, v1.retired_at) == ("active", "", None)  # serving again


def test_the_deployment_page_shows_candidate_deltas_and_buttons_only_to_approvers(client, approver, viewer, candidate):
    deployment = candidate.deployment
    now = timezone.now()
    _evaluate(deployment, deployment.versions.get(number=1), accuracy=0.95, at=now - timedelta(hours=1))
    _evaluate(deployment, candidate, accuracy=0.97, at=now - timedelta(minutes=30))

    client.force_login(viewer)
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()
    assert 'data-action="approve"' not in page and 'data-action="reject"' not in page
    assert "awaiting an approver" in page

    client.force_login(approver)
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()
    assert 'data-action="approve"' in page and 'data-action="reject"' in page
    assert "+0.020" in page  # accuracy of the candidate against the active version


def test_the_rollback_button_appears_once_there_is_an_earlier_version(client, approver, candidate):
    client.force_login(approver)
    assert 'data-action="rollback"' not in client.get("/d/tumour/").content.decode()

    services.version_approve(version=candidate, by=approver, comment="ship it")

    assert 'data-action="rollback"' in client.get("/d/tumour/").content.decode()


# ---------------------------------------------------------------- uploads


def test_uploading_a_text_file_shows_the_error_and_stores_nothing(client, operator, deployment, tmp_path):
    client.force_login(operator)
    blobs_before, versions_before, audit_before = _blobs(), deployment.versions.count(), _audit_count()
    text = tmp_path / "model.onnx"
    text.write_text("this is not a model\n")

    with text.open("rb") as handle:
        response = client.post(reverse("version-new", args=["tumour"]), {"file": handle, "notes": "oops"})

    assert response.status_code == 422
    errors = response.context["form"].non_field_errors()
    assert errors and "ONNX" in errors[0]
    assert escape(errors[0]) in response.content.decode()
    assert deployment.versions.count() == versions_before
    assert _blobs() == blobs_before
    assert _audit_count() == audit_before


def test_an_operator_uploads_a_real_model_as_a_candidate(client, operator, deployment, tmp_path):
    client.force_login(operator)
    path = tmp_path / "v2.onnx"
    path.write_bytes(trained_model(C=0.5)[0])

    with path.open("rb") as handle:
        response = client.post(reverse("version-new", args=["tumour"]), {"file": handle, "notes": "C=0.5"})

    assert response.status_code == 302
    version = deployment.versions.get(number=2)
    assert (version.status, version.notes, version.created_by) == (ModelVersion.Status.CANDIDATE, "C=0.5", operator)


def test_a_viewer_cannot_open_the_upload_form(client, viewer, deployment):
    client.force_login(viewer)

    assert client.get(reverse("version-new", args=["tumour"])).status_code == 403
