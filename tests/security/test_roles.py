"""Two role rules enforced on the server: a second person approves (per deployment), and viewers see no tokens."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from monitoring import services
from monitoring.models import AuditEvent, MaintenanceJob, Membership, ModelVersion, Role
from tests.conftest import CLASSES, FEATURES, trained_model


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _approve(user: User, number: int = 2):
    return _client(user).post(
        f"/api/v1/deployments/tumour/versions/{number}/approve", data=json.dumps({"comment": "ship it"}),
        content_type="application/json",
    )


@pytest.fixture
def second_approver(team) -> User:
    user = User.objects.create_user(username="bianca", password="correct-horse-battery")
    Membership.objects.create(team=team, user=user, role=Role.APPROVER)
    return user


def _upload(user: User):
    onnx_bytes, _ = trained_model(C=0.5)
    return _client(user).post(
        "/api/v1/deployments/tumour/versions", {"file": SimpleUploadedFile("m.onnx", onnx_bytes, "application/octet-stream")}
    )


def _unchanged(deployment, audits_before: int) -> None:
    states = dict(deployment.versions.values_list("number", "status"))
    assert states == {1: ModelVersion.Status.ACTIVE, 2: ModelVersion.Status.CANDIDATE}
    assert deployment.versions.get(number=2).decided_by is None
    assert AuditEvent.objects.count() == audits_before
    assert not AuditEvent.objects.filter(action="version.approve").exists()


# ---------------------------------------------------------------- a second person approves


def test_an_approver_cannot_approve_a_candidate_they_uploaded(deployment, approver):
    assert _upload(approver).status_code == 201
    audits = AuditEvent.objects.count()

    response = _approve(approver)

    assert response.status_code == 403
    assert response.json() == {
        "type": "about:blank", "title": "Forbidden", "status": 403,
        "detail": "v2 needs a second approver: you uploaded it, and Tumour classifier requires someone else to approve "
        "it (the deployment's require_distinct_approver setting).",
        "errors": [],
    }
    _unchanged(deployment, audits)


def test_the_dashboard_refuses_it_too_and_says_why(deployment, approver):
    _upload(approver)
    audits = AuditEvent.objects.count()

    response = _client(approver).post(reverse("version-approve", args=["tumour", 2]), {"comment": "mine"}, follow=True)

    assert response.status_code == 200
    assert "v2 needs a second approver: you uploaded it" in response.content.decode()
    _unchanged(deployment, audits)


def test_an_approver_cannot_approve_the_candidate_of_a_job_they_queued(deployment, approver):
    source = deployment.active_version()
    job = MaintenanceJob.objects.create(deployment=deployment, source_version=source, kind="retrain", requested_by=approver)
    # As the worker registers a job's candidate: by no user, made by the job.
    services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=None, origin="retrain",
                              parent=source, job=job)
    audits = AuditEvent.objects.count()

    response = _approve(approver)

    assert response.status_code == 403
    assert response.json()["detail"].startswith(f"v2 needs a second approver: you queued job {job.pk}, which made it")
    _unchanged(deployment, audits)


def test_another_approver_approves_it(deployment, approver, second_approver):
    _upload(approver)

    response = _approve(second_approver)

    assert response.status_code == 200 and response.json()["decided_by"] == "bianca"
    assert deployment.active_version().number == 2


def test_with_the_rule_off_an_approver_may_ship_their_own_upload(deployment, approver):
    services.deployment_approval_configure(deployment=deployment, require_distinct_approver=False, by=approver)
    _upload(approver)

    response = _approve(approver)

    assert response.status_code == 200
    assert deployment.active_version().number == 2


def test_rejecting_ones_own_candidate_is_still_allowed(deployment, approver):
    _upload(approver)

    response = _client(approver).post(
        "/api/v1/deployments/tumour/versions/2/reject", data=json.dumps({"comment": "I uploaded the wrong file"}), content_type="application/json"
    )

    assert response.status_code == 200 and response.json()["status"] == "rejected"


def test_new_deployments_require_a_second_approver_unless_created_without(team, operator):
    client = _client(operator)
    body = {"team": team.slug, "feature_names": FEATURES, "class_labels": CLASSES}

    default = client.post("/api/v1/deployments", data=json.dumps(body | {"name": "Default"}), content_type="application/json")
    solo = client.post("/api/v1/deployments", content_type="application/json",
                       data=json.dumps(body | {"name": "Solo", "require_distinct_approver": False}))

    assert (default.status_code, solo.status_code) == (201, 201)
    assert (default.json()["require_distinct_approver"], solo.json()["require_distinct_approver"]) == (True, False)
    created = AuditEvent.objects.get(action="deployment.create", deployment__slug="solo")
    assert created.after["require_distinct_approver"] is False


# ---------------------------------------------------------------- tokens


def test_viewers_do_not_see_the_ingestion_tokens_that_operators_see(deployment, operator, viewer):
    token, _ = services.token_create(deployment=deployment, name="scoring service", by=operator)

    as_viewer = _client(viewer).get(reverse("deployment", args=["tumour"]))
    as_operator = _client(operator).get(reverse("deployment", args=["tumour"]))

    assert as_viewer.status_code == as_operator.status_code == 200
    assert as_viewer.context["tokens"] == []  # not sent to the template at all, not merely hidden by it
    page = as_viewer.content.decode()
    assert token.prefix not in page and "scoring service" not in page and 'id="tokens"' not in page
    assert token.prefix in as_operator.content.decode()
    # The same line as the API's.
    assert _client(viewer).get("/api/v1/deployments/tumour/tokens").status_code == 403
