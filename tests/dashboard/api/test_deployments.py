"""dashboard/api/deployments.py: reading deployments, uploading and deciding versions, deployments and datasets."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from monitoring import services
from monitoring.models import (
    AuditEvent,
    Dataset,
    Deployment,
    ModelVersion,
)
from tests.conftest import FEATURES, breast_cancer_split, trained_model
from tests.dashboard.api.helpers import bearer, blob_files, client_for, csv_upload, onnx_upload, post_json

# ---------------------------------------------------------------- management: reading


def test_management_endpoints_need_a_session(deployment):
    response = Client().get("/api/v1/deployments/tumour")

    assert response.status_code == 401
    assert "Log in" in response.json()["detail"]


def test_a_member_sees_the_deployment_and_its_versions(deployment, viewer):
    client = client_for(viewer)

    assert [d["slug"] for d in client.get("/api/v1/deployments").json()["items"]] == ["tumour"]
    detail = client.get("/api/v1/deployments/tumour").json()
    assert (detail["team"], detail["active_version"], detail["feature_names"]) == ("risk-models", 1, FEATURES)
    [v1] = client.get("/api/v1/deployments/tumour/versions").json()["items"]
    assert (v1["number"], v1["status"], v1["has_recipe"], v1["n_features"]) == (1, "active", True, 30)


def test_an_outsider_gets_404_for_another_teams_deployment(deployment, outsider):
    client = client_for(outsider)

    assert client.get("/api/v1/deployments").json()["items"] == []
    for url in ("/api/v1/deployments/tumour", "/api/v1/deployments/tumour/versions", "/api/v1/deployments/tumour/alerts"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["detail"] == "No such deployment"
    upload = client.post("/api/v1/deployments/tumour/versions", {"file": onnx_upload()})
    assert upload.status_code == 404
    assert deployment.versions.count() == 1


# ---------------------------------------------------------------- management: versions


def test_an_operator_uploads_a_candidate_and_an_approver_approves_it(deployment, operator, approver):
    onnx_bytes, recipe = trained_model(C=0.5)

    uploaded = client_for(operator).post(
        "/api/v1/deployments/tumour/versions",
        {"file": onnx_upload(onnx_bytes), "recipe": SimpleUploadedFile("r.skops", recipe), "notes": "C=0.5"},
    )
    assert uploaded.status_code == 201, uploaded.content
    assert (uploaded.json()["number"], uploaded.json()["status"], uploaded.json()["created_by"]) == (2, "candidate", "oscar")

    approved = post_json(client_for(approver), "/api/v1/deployments/tumour/versions/2/approve", {"comment": "ship it"})
    assert approved.status_code == 200
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("active", "alice")
    assert deployment.versions.get(number=1).status == ModelVersion.Status.RETIRED

    rolled_back = post_json(client_for(approver), "/api/v1/deployments/tumour/rollback", {"comment": "regressed"})
    assert rolled_back.status_code == 200 and rolled_back.json()["number"] == 1


def test_a_viewer_cannot_upload_or_approve(deployment, operator, viewer):
    v2 = services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=operator)
    client = client_for(viewer)
    audits_before = AuditEvent.objects.count()

    upload = client.post("/api/v1/deployments/tumour/versions", {"file": onnx_upload(trained_model(C=2.0)[0])})
    approve = post_json(client, "/api/v1/deployments/tumour/versions/2/approve", {})
    rollback = post_json(client, "/api/v1/deployments/tumour/rollback", {})

    assert [upload.status_code, approve.status_code, rollback.status_code] == [403, 403, 403]
    assert "operator role" in upload.json()["detail"] and "approver role" in approve.json()["detail"]
    assert deployment.versions.count() == 2
    v2.refresh_from_db()
    assert v2.status == ModelVersion.Status.CANDIDATE
    assert AuditEvent.objects.count() == audits_before


def test_an_operator_cannot_approve(deployment, operator):
    services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=operator)

    response = post_json(client_for(operator), "/api/v1/deployments/tumour/versions/2/approve", {})

    assert response.status_code == 403
    assert deployment.versions.get(number=2).status == ModelVersion.Status.CANDIDATE


def test_approving_a_version_that_is_not_a_candidate_is_409(deployment, approver):
    response = post_json(client_for(approver), "/api/v1/deployments/tumour/versions/1/approve", {"comment": "again"})

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json() == {"type": "about:blank", "title": "Conflict", "status": 409,
                               "detail": "v1 is active; only a candidate can be approved.", "errors": []}


def test_approving_without_a_reason_is_422_and_nothing_is_written(deployment, operator, approver):
    services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=operator)
    audits_before = AuditEvent.objects.count()

    response = post_json(client_for(approver), "/api/v1/deployments/tumour/versions/2/approve", {"comment": " "})

    assert response.status_code == 422
    assert response.json()["detail"].startswith("Say why you approve v2")
    assert deployment.versions.get(number=2).status == ModelVersion.Status.CANDIDATE
    assert AuditEvent.objects.count() == audits_before


def test_it_rejects_a_file_that_is_not_onnx(deployment, operator):
    blobs_before = blob_files()

    response = client_for(operator).post(
        "/api/v1/deployments/tumour/versions", {"file": SimpleUploadedFile("notes.txt", b"just some text\n", "text/plain")}
    )

    assert response.status_code == 422
    assert response.json()["detail"].startswith("The file is not a valid ONNX model")
    assert response.json()["errors"][0]["field"] == "file"
    assert deployment.versions.count() == 1
    assert blob_files() == blobs_before


def test_an_upload_without_a_file_is_422_naming_the_field(deployment, operator):
    response = client_for(operator).post("/api/v1/deployments/tumour/versions", {"notes": "forgot the file"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "file"


def test_an_oversized_model_upload_is_413(deployment, operator, settings):
    settings.MAX_MODEL_UPLOAD_BYTES = 1_000
    blobs_before = blob_files()

    response = client_for(operator).post("/api/v1/deployments/tumour/versions", {"file": onnx_upload()})

    assert response.status_code == 413
    assert "the limit is 1000" in response.json()["detail"]
    assert deployment.versions.count() == 1
    assert blob_files() == blobs_before


def test_writes_need_the_csrf_token(deployment, approver):
    services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=approver)
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)

    response = post_json(client, "/api/v1/deployments/tumour/versions/2/approve", {})

    assert response.status_code == 403
    assert deployment.versions.get(number=2).status == ModelVersion.Status.CANDIDATE


# ---------------------------------------------------------------- management: deployments and datasets


def test_a_deployment_created_to_allow_nan_accepts_it_through_the_api(team, operator):
    response = post_json(
        client_for(operator), "/api/v1/deployments",
        {"name": "Sensors", "team": team.slug, "feature_names": ["a", "b"], "class_labels": ["x", "y"], "allow_non_finite": True},
    )
    _, token = services.token_create(deployment=Deployment.objects.get(slug="sensors"), name="t", by=operator)

    sent = Client().post(
        "/api/v1/deployments/sensors/predictions", content_type="application/json", **bearer(token),
        data='{"predictions": [{"id": "1", "timestamp": "2026-01-01T00:00:00Z", "features": [NaN, 1.0], "predicted_label": "x"}]}',
    )

    assert response.json()["allow_non_finite"] is True
    assert sent.status_code == 201, sent.content


def test_an_operator_creates_a_deployment_in_their_team(team, operator):
    response = post_json(
        client_for(operator),
        "/api/v1/deployments",
        {"name": "Churn", "team": team.slug, "feature_names": ["a", "b"], "class_labels": [0, 1], "metric_thresholds": {"f1_macro": 0.8}},
    )

    assert response.status_code == 201, response.content
    assert (response.json()["slug"], response.json()["class_labels"], response.json()["active_version"]) == ("churn", ["0", "1"], None)


@pytest.mark.parametrize(("who", "status"), [("viewer", 403), ("outsider", 404)])
def test_only_an_operator_of_the_team_creates_deployments(request, team, who, status):
    user = request.getfixturevalue(who)

    response = post_json(client_for(user), "/api/v1/deployments", {"name": "Churn", "team": team.slug, "feature_names": ["a"], "class_labels": ["x", "y"]})

    assert response.status_code == status
    assert not team.deployments.exists()


def test_an_invalid_deployment_is_422_with_field_errors(team, operator):
    response = post_json(client_for(operator), "/api/v1/deployments", {"name": "Churn", "team": team.slug, "feature_names": ["a", "a"], "class_labels": ["x"]})

    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"feature_names", "class_labels"}


def test_an_operator_uploads_a_labelled_csv(deployment, operator):
    _, _, X_test, y_test = breast_cancer_split()
    rows = [[*map(float, x), int(y)] for x, y in zip(X_test[:50], y_test[:50])]

    response = client_for(operator).post(
        "/api/v1/deployments/tumour/datasets",
        {"file": csv_upload(rows, [*FEATURES, "label"], "fresh.csv"), "kind": "evaluation"},
    )

    assert response.status_code == 201, response.content
    assert (response.json()["name"], response.json()["n_rows"], response.json()["has_labels"], response.json()["current"]) == ("fresh.csv", 50, True, True)
    deployment.refresh_from_db()
    assert deployment.evaluation_dataset.n_rows == 50


def test_a_bad_csv_cell_is_422_naming_line_and_column(deployment, operator):
    rows = [[1.0] * 30 for _ in range(3)]
    rows[1][7] = "abc"
    datasets_before = Dataset.objects.count()

    response = client_for(operator).post(
        "/api/v1/deployments/tumour/datasets", {"file": csv_upload(rows, FEATURES), "kind": "reference"}
    )

    assert response.status_code == 422
    assert response.json()["detail"] == "Line 3, column 'f7': 'abc' is not a number."
    assert response.json()["errors"] == [{"row": None, "line": 3, "field": "f7", "message": "Line 3, column 'f7': 'abc' is not a number."}]
    assert Dataset.objects.count() == datasets_before
