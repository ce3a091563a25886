"""The JSON API through Django's test client: auth, roles, uploads, ingestion and the error shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from monitoring import services
from monitoring.models import Alert, AuditEvent, Dataset, Deployment, MaintenanceJob, ModelVersion, Prediction, PredictionBatch
from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model
from tests.workers.conftest import mlp_deployment  # noqa: F401  (a fixture: a digits MLP, which compresses)


@pytest.fixture
def token(deployment, operator) -> str:
    _, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)
    return plaintext


@pytest.fixture
def other_deployment(outsider):
    """Another team's deployment with the same schema, so only the token can tell them apart."""
    team = outsider.memberships.get().team
    return services.deployment_create(
        team=team, name="Their classifier", slug="theirs", feature_names=FEATURES, class_labels=CLASSES, by=outsider
    )


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def prediction_rows(n: int, *, start: int = 0) -> list[dict]:
    _, _, X_test, _ = breast_cancer_split()
    return [
        {
            "id": f"req-{start + i}",
            "timestamp": "2025-03-01T12:00:00Z",
            "features": dict(zip(FEATURES, map(float, X_test[start + i]))),
            "predicted_label": "0",
        }
        for i in range(n)
    ]


def post_json(client: Client, url: str, body, **extra):
    # json.dumps, like most Python clients: it writes NaN for float('nan').
    return client.post(url, data=json.dumps(body), content_type="application/json", **extra)


def blob_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT) / "blobs"
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def onnx_upload(data: bytes | None = None, name: str = "model.onnx") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data if data is not None else trained_model(C=0.5)[0], "application/octet-stream")


def csv_upload(rows: list[list], header: list[str], name: str = "data.csv") -> SimpleUploadedFile:
    lines = [",".join(header)] + [",".join(str(value) for value in row) for row in rows]
    return SimpleUploadedFile(name, ("\n".join(lines) + "\n").encode(), "text/csv")


# ---------------------------------------------------------------- the schema


def test_the_openapi_schema_lists_every_endpoint_with_its_errors(db):
    response = Client().get("/api/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert {"/api/deployments/{slug}/predictions", "/api/deployments/{slug}/labels"} <= set(paths)
    ingest = paths["/api/deployments/{slug}/predictions"]["post"]
    assert ingest["security"] == [{"DeploymentToken": []}]
    assert {"401", "403", "413", "422"} <= set(ingest["responses"])
    body = ingest["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]["predictions"]["items"]["properties"]) >= {"id", "timestamp", "features", "predicted_label"}
    assert {"Idempotency-Key"} <= {p["name"] for p in ingest["parameters"] if p["in"] == "header"}
    assert {"/api/deployments/{slug}/predictions/upload", "/api/deployments/{slug}/labels/upload"} <= set(paths)
    upload = paths["/api/deployments/{slug}/predictions/upload"]["post"]
    assert "file" in upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    answer = schema["components"]["schemas"]["IngestOut"]["properties"]
    assert set(answer) == {"batch_id", "received", "created", "replayed", "status"}
    assert "404" in paths["/api/deployments/{slug}/batches/{batch_id}"]["get"]["responses"]
    operations = [op for path in paths.values() for op in path.values()]
    assert all(op["summary"] and op["responses"] for op in operations)
    assert all(any(code.startswith("4") for code in op["responses"]) for op in operations)
    assert Client().get("/api/docs").status_code == 200


# ---------------------------------------------------------------- ingestion and tokens


def test_it_ingests_predictions_with_the_deployments_token(deployment, token):
    response = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(10)}, **bearer(token))

    assert response.status_code == 200, response.content
    batch = PredictionBatch.objects.get()
    assert response.json() == {"batch_id": batch.pk, "received": 10, "created": 10, "replayed": False, "status": "indexed"}
    assert deployment.predictions.count() == 10


def test_a_large_batch_status_says_pending_then_indexed(deployment, token, deferred):
    batch_id = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(4)}, **bearer(token)).json()["batch_id"]
    url = f"/api/deployments/tumour/batches/{batch_id}"

    pending = Client().get(url, **bearer(token)).json()
    services.batches_index(deployment_id=deployment.pk)
    indexed = Client().get(url, **bearer(token)).json()

    assert (pending["status"], pending["indexed_at"], pending["n_rows"]) == ("pending", None, 4)
    assert (indexed["status"], indexed["errors"]) == ("indexed", [])
    assert indexed["indexed_at"] is not None


def test_a_rejected_batch_status_names_the_rows(deployment, token, deferred):
    post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(3)}, **bearer(token))
    late = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(3, start=1)}, **bearer(token))
    services.batches_index(deployment_id=deployment.pk)

    status = Client().get(f"/api/deployments/tumour/batches/{late.json()['batch_id']}", **bearer(token)).json()

    assert status["status"] == "rejected"
    assert [(e["row"], e["field"]) for e in status["errors"]] == [(0, "id"), (1, "id")]
    assert "already stored" in status["message"]


def test_a_batch_of_another_deployment_or_unknown_is_404(deployment, token, other_deployment):
    theirs = services.predictions_ingest(deployment=other_deployment, rows=prediction_rows(2))

    for batch_id in (theirs.batch_id, 999_999):
        response = Client().get(f"/api/deployments/tumour/batches/{batch_id}", **bearer(token))
        assert response.status_code == 404
        assert response.json()["detail"] == f"This deployment has no batch {batch_id}."
    assert Client().get(f"/api/deployments/theirs/batches/{theirs.batch_id}", **bearer(token)).status_code == 403


def test_a_retried_batch_is_stored_once(deployment, token):
    body = {"predictions": prediction_rows(10)}
    first = post_json(Client(), "/api/deployments/tumour/predictions", body, **bearer(token))

    response = post_json(Client(), "/api/deployments/tumour/predictions", body, **bearer(token))

    assert response.status_code == 200
    assert response.json() == first.json() | {"replayed": True}
    assert response["Idempotent-Replayed"] == "true"
    assert deployment.predictions.count() == 10


def test_a_retry_with_the_same_idempotency_key_is_answered_without_storing(deployment, token):
    key = {"HTTP_IDEMPOTENCY_KEY": "3f0c5a7e-batch-1"}
    first = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(10)}, **bearer(token), **key)

    # A client that rebuilt its batch (other spacing, keys in another order) but kept the key: the same batch.
    rebuilt = json.dumps({"predictions": [dict(reversed(row.items())) for row in prediction_rows(10)]}, indent=2)
    again = Client().post("/api/deployments/tumour/predictions", rebuilt, content_type="application/json", **bearer(token), **key)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json() | {"replayed": True}
    assert deployment.predictions.count() == 10


def test_an_idempotency_key_reused_with_other_rows_is_422_and_stores_nothing(deployment, token):
    key = {"HTTP_IDEMPOTENCY_KEY": "3f0c5a7e-batch-1"}
    first = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(10)}, **bearer(token), **key)

    again = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(11)}, **bearer(token), **key)

    assert (first.status_code, again.status_code) == (200, 422)
    assert again.json()["detail"].startswith("Idempotency-Key reused with a different body")
    assert deployment.predictions.count() == 10
    assert PredictionBatch.objects.count() == 1


def test_a_new_batch_reusing_stored_ids_is_409_naming_the_rows(deployment, token):
    post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(3)}, **bearer(token))

    response = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(3, start=2)}, **bearer(token))

    assert response.status_code == 409
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [(0, "id")]
    assert deployment.predictions.count() == 3


def test_a_batch_over_the_row_limit_is_413(deployment, token, settings):
    settings.MAX_PREDICTION_BATCH = 5

    response = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(6)}, **bearer(token))

    assert response.status_code == 413
    assert response.json()["detail"] == "The batch has 6 predictions; the limit is 5."
    assert not Prediction.objects.exists()


def test_a_wrong_feature_count_is_422_naming_row_and_field(deployment, token):
    rows = prediction_rows(4)
    rows[1]["features"] = [1.0, 2.0]

    response = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": rows}, **bearer(token))

    assert response.status_code == 422
    assert [(e["row"], e["field"], e["message"]) for e in response.json()["errors"]] == [(1, "features", "expected 30 values, got 2")]
    assert not PredictionBatch.objects.exists()


def test_a_csv_upload_stores_a_batch_and_a_label_file_joins_it(deployment, token):
    _, _, X_test, _ = breast_cancer_split()
    header = ",".join(["id", "timestamp", "predicted_label", *FEATURES])
    lines = [header] + [",".join([f"u-{i}", "2025-03-01T12:00:00", "1", *map(str, X_test[i])]) for i in range(25)]
    upload = SimpleUploadedFile("traffic.csv", "\n".join(lines).encode(), content_type="text/csv")

    response = Client().post("/api/deployments/tumour/predictions/upload", {"file": upload}, **bearer(token))
    labels = SimpleUploadedFile("labels.csv", b"id,label\nu-0,0\nu-3,1\n", content_type="text/csv")
    labelled = Client().post("/api/deployments/tumour/labels/upload", {"file": labels}, **bearer(token))

    assert response.status_code == 200, response.content
    assert (response.json()["created"], labelled.json()) == (25, {"received": 2, "updated": 2})
    assert deployment.predictions.count() == 25
    assert dict(deployment.predictions.exclude(label_index=None).values_list("request_id", "label_index")) == {"u-0": 0, "u-3": 1}


def test_a_file_sent_as_the_request_body_is_stored_like_a_form_upload(deployment, token):
    _, _, X_test, _ = breast_cancer_split()
    header = ",".join(["id", "timestamp", "predicted_label", *FEATURES])
    lines = [header] + [",".join([f"raw-{i}", "2025-03-01T12:00:00", "1", *map(str, X_test[i])]) for i in range(7)]

    response = Client().post("/api/deployments/tumour/predictions/upload", "\n".join(lines).encode(),
                             content_type="text/csv", **bearer(token))
    empty = Client().post("/api/deployments/tumour/predictions/upload", b"", content_type="text/csv", **bearer(token))

    assert response.status_code == 200, response.content
    assert response.json()["created"] == 7
    assert PredictionBatch.objects.get().source == PredictionBatch.Source.UPLOAD
    assert (empty.status_code, empty.json()["detail"]) == (422, "Send the file as a multipart field named file, or as the request body.")


@pytest.mark.parametrize("path", ["predictions/upload", "labels/upload"])
def test_a_file_sent_as_a_url_encoded_form_is_415_saying_what_to_send(deployment, token, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10  # Django would otherwise parse it as form fields and call it too large

    response = Client().post(f"/api/deployments/tumour/{path}", b"id,timestamp\nr-1,2025-03-01",
                             content_type="application/x-www-form-urlencoded", **bearer(token))

    assert response.status_code == 415
    assert "Content-Type: application/vnd.apache.parquet or text/csv" in response.json()["detail"]
    assert not PredictionBatch.objects.exists()


def test_a_raw_body_over_the_byte_limit_is_413_and_stores_nothing(deployment, token, settings):
    settings.MAX_UPLOAD_BYTES = 100

    response = Client().post("/api/deployments/tumour/predictions/upload", b"id," * 100, content_type="text/csv", **bearer(token))

    assert response.status_code == 413
    assert not PredictionBatch.objects.exists()


def test_an_upload_over_the_byte_limit_is_413(deployment, token, settings):
    settings.MAX_UPLOAD_BYTES = 100
    upload = SimpleUploadedFile("traffic.csv", b"id," * 100, content_type="text/csv")

    response = Client().post("/api/deployments/tumour/predictions/upload", {"file": upload}, **bearer(token))

    assert response.status_code == 413
    assert "the limit is 100" in response.json()["detail"]


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ({}, "needs the deployment's API token"),
        ({"HTTP_AUTHORIZATION": "Bearer wk_deadbeef_not-the-secret"}, "not valid, or it has been revoked"),
        ({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, "needs the deployment's API token"),
    ],
    ids=["missing", "wrong", "not-bearer"],
)
def test_ingestion_without_a_valid_token_is_401(deployment, token, header, detail):
    response = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **header)

    assert response.status_code == 401
    assert detail in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Prediction.objects.exists()


def test_a_revoked_token_is_refused(deployment, operator, token):
    services.token_revoke(token=deployment.api_tokens.get(), by=operator)

    response = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **bearer(token))

    assert response.status_code == 401
    assert not Prediction.objects.exists()


def test_a_token_of_another_deployment_is_refused(deployment, other_deployment, outsider):
    _, theirs = services.token_create(deployment=other_deployment, name="theirs", by=outsider)

    response = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **bearer(theirs))

    assert response.status_code == 403
    assert response.json()["detail"] == "This API token belongs to another deployment."
    assert not Prediction.objects.exists()


def test_a_session_does_not_open_the_ingestion_endpoints(deployment, approver):
    response = post_json(client_for(approver), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(1)})

    assert response.status_code == 401
    assert not Prediction.objects.exists()


def test_a_nan_feature_is_422_naming_row_and_field(deployment, token):
    rows = prediction_rows(3)
    rows[2]["features"]["f4"] = float("nan")

    response = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": rows}, **bearer(token))

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["row"], error["field"]) == (2, "features.f4")
    assert "finite" in error["message"]
    assert not Prediction.objects.exists()


def test_a_body_that_is_not_json_is_400(deployment, token):
    response = Client().post("/api/deployments/tumour/predictions", data=b"{not json", content_type="application/json", **bearer(token))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body is not valid JSON")


def test_a_body_without_the_predictions_list_is_422(deployment, token):
    response = post_json(Client(), "/api/deployments/tumour/predictions", prediction_rows(1), **bearer(token))

    assert response.status_code == 422
    assert response.json()["detail"] == 'The body must be a JSON object with a "predictions" list.'


def test_an_oversized_body_is_413(deployment, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5_000
    body = {"predictions": prediction_rows(20)}

    response = post_json(Client(), "/api/deployments/tumour/predictions", body, **bearer(token))

    assert response.status_code == 413
    assert "the limit is 5000" in response.json()["detail"]
    assert not Prediction.objects.exists()


def test_labels_attach_to_stored_predictions(deployment, token):
    post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(3)}, **bearer(token))

    response = post_json(
        Client(), "/api/deployments/tumour/labels", {"labels": [{"id": "req-0", "label": "1"}, {"id": "req-1", "label": "0"}]},
        **bearer(token),
    )

    assert response.status_code == 200
    assert response.json() == {"received": 2, "updated": 2}
    assert dict(deployment.predictions.exclude(label_index=None).values_list("request_id", "label_index")) == {"req-0": 1, "req-1": 0}


def test_labels_for_an_unknown_id_store_nothing(deployment, token):
    post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **bearer(token))

    response = post_json(
        Client(), "/api/deployments/tumour/labels", {"labels": [{"id": "req-0", "label": "1"}, {"id": "ghost", "label": "0"}]},
        **bearer(token),
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [{"row": 1, "line": None, "field": "id", "message": "no prediction with id 'ghost'"}]
    assert not deployment.predictions.exclude(label_index=None).exists()


def test_an_operator_creates_lists_and_revokes_tokens(deployment, operator):
    client = client_for(operator)

    created = post_json(client, "/api/deployments/tumour/tokens", {"name": "batch scorer"})
    assert created.status_code == 201
    plaintext = created.json()["token"]
    assert post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **bearer(plaintext)).status_code == 200

    listed = client.get("/api/deployments/tumour/tokens").json()
    assert [(t["name"], t["prefix"], t["revoked_at"]) for t in listed] == [("batch scorer", created.json()["prefix"], None)]
    assert plaintext.split("_", 2)[2] not in json.dumps(listed)

    revoked = client.delete(f"/api/deployments/tumour/tokens/{created.json()['prefix']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(1, start=1)}, **bearer(plaintext)).status_code == 401


def test_a_viewer_cannot_create_tokens(deployment, viewer):
    response = post_json(client_for(viewer), "/api/deployments/tumour/tokens", {"name": "mine"})

    assert response.status_code == 403
    assert not deployment.api_tokens.exists()


# ---------------------------------------------------------------- management: reading


def test_management_endpoints_need_a_session(deployment):
    response = Client().get("/api/deployments/tumour")

    assert response.status_code == 401
    assert "Log in" in response.json()["detail"]


def test_a_member_sees_the_deployment_and_its_versions(deployment, viewer):
    client = client_for(viewer)

    assert [d["slug"] for d in client.get("/api/deployments").json()] == ["tumour"]
    detail = client.get("/api/deployments/tumour").json()
    assert (detail["team"], detail["active_version"], detail["feature_names"]) == ("risk-models", 1, FEATURES)
    [v1] = client.get("/api/deployments/tumour/versions").json()
    assert (v1["number"], v1["status"], v1["has_recipe"], v1["n_features"]) == (1, "active", True, 30)


def test_an_outsider_gets_404_for_another_teams_deployment(deployment, outsider):
    client = client_for(outsider)

    assert client.get("/api/deployments").json() == []
    for url in ("/api/deployments/tumour", "/api/deployments/tumour/versions", "/api/deployments/tumour/alerts"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["detail"] == "No such deployment"
    upload = client.post("/api/deployments/tumour/versions", {"file": onnx_upload()})
    assert upload.status_code == 404
    assert deployment.versions.count() == 1


# ---------------------------------------------------------------- management: versions


def test_an_operator_uploads_a_candidate_and_an_approver_approves_it(deployment, operator, approver):
    onnx_bytes, recipe = trained_model(C=0.5)

    uploaded = client_for(operator).post(
        "/api/deployments/tumour/versions",
        {"file": onnx_upload(onnx_bytes), "recipe": SimpleUploadedFile("r.skops", recipe), "notes": "C=0.5"},
    )
    assert uploaded.status_code == 201, uploaded.content
    assert (uploaded.json()["number"], uploaded.json()["status"], uploaded.json()["created_by"]) == (2, "candidate", "oscar")

    approved = post_json(client_for(approver), "/api/deployments/tumour/versions/2/approve", {"comment": "ship it"})
    assert approved.status_code == 200
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("active", "alice")
    assert deployment.versions.get(number=1).status == ModelVersion.Status.RETIRED

    rolled_back = post_json(client_for(approver), "/api/deployments/tumour/rollback", {"comment": "regressed"})
    assert rolled_back.status_code == 200 and rolled_back.json()["number"] == 1


def test_a_viewer_cannot_upload_or_approve(deployment, operator, viewer):
    v2 = services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=operator)
    client = client_for(viewer)
    audits_before = AuditEvent.objects.count()

    upload = client.post("/api/deployments/tumour/versions", {"file": onnx_upload(trained_model(C=2.0)[0])})
    approve = post_json(client, "/api/deployments/tumour/versions/2/approve", {})
    rollback = post_json(client, "/api/deployments/tumour/rollback", {})

    assert [upload.status_code, approve.status_code, rollback.status_code] == [403, 403, 403]
    assert "operator role" in upload.json()["detail"] and "approver role" in approve.json()["detail"]
    assert deployment.versions.count() == 2
    v2.refresh_from_db()
    assert v2.status == ModelVersion.Status.CANDIDATE
    assert AuditEvent.objects.count() == audits_before


def test_an_operator_cannot_approve(deployment, operator):
    services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=operator)

    response = post_json(client_for(operator), "/api/deployments/tumour/versions/2/approve", {})

    assert response.status_code == 403
    assert deployment.versions.get(number=2).status == ModelVersion.Status.CANDIDATE


def test_approving_a_version_that_is_not_a_candidate_is_409(deployment, approver):
    response = post_json(client_for(approver), "/api/deployments/tumour/versions/1/approve", {})

    assert response.status_code == 409
    assert response.json() == {"detail": "v1 is active; only a candidate can be approved.", "errors": []}


def test_it_rejects_a_file_that_is_not_onnx(deployment, operator):
    blobs_before = blob_files()

    response = client_for(operator).post(
        "/api/deployments/tumour/versions", {"file": SimpleUploadedFile("notes.txt", b"just some text\n", "text/plain")}
    )

    assert response.status_code == 422
    assert response.json()["detail"].startswith("The file is not a valid ONNX model")
    assert response.json()["errors"][0]["field"] == "file"
    assert deployment.versions.count() == 1
    assert blob_files() == blobs_before


def test_an_upload_without_a_file_is_422_naming_the_field(deployment, operator):
    response = client_for(operator).post("/api/deployments/tumour/versions", {"notes": "forgot the file"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "file"


def test_an_oversized_model_upload_is_413(deployment, operator, settings):
    settings.MAX_MODEL_UPLOAD_BYTES = 1_000
    blobs_before = blob_files()

    response = client_for(operator).post("/api/deployments/tumour/versions", {"file": onnx_upload()})

    assert response.status_code == 413
    assert "the limit is 1000" in response.json()["detail"]
    assert deployment.versions.count() == 1
    assert blob_files() == blobs_before


def test_writes_need_the_csrf_token(deployment, approver):
    services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=approver)
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)

    response = post_json(client, "/api/deployments/tumour/versions/2/approve", {})

    assert response.status_code == 403
    assert deployment.versions.get(number=2).status == ModelVersion.Status.CANDIDATE


# ---------------------------------------------------------------- management: deployments and datasets


def test_a_deployment_created_to_allow_nan_accepts_it_through_the_api(team, operator):
    response = post_json(
        client_for(operator), "/api/deployments",
        {"name": "Sensors", "team": team.slug, "feature_names": ["a", "b"], "class_labels": ["x", "y"], "allow_non_finite": True},
    )
    _, token = services.token_create(deployment=Deployment.objects.get(slug="sensors"), name="t", by=operator)

    sent = Client().post(
        "/api/deployments/sensors/predictions", content_type="application/json", **bearer(token),
        data='{"predictions": [{"id": "1", "timestamp": "2026-01-01T00:00:00Z", "features": [NaN, 1.0], "predicted_label": "x"}]}',
    )

    assert response.json()["allow_non_finite"] is True
    assert sent.status_code == 200, sent.content


def test_an_operator_creates_a_deployment_in_their_team(team, operator):
    response = post_json(
        client_for(operator),
        "/api/deployments",
        {"name": "Churn", "team": team.slug, "feature_names": ["a", "b"], "class_labels": [0, 1], "metric_thresholds": {"f1_macro": 0.8}},
    )

    assert response.status_code == 201, response.content
    assert (response.json()["slug"], response.json()["class_labels"], response.json()["active_version"]) == ("churn", ["0", "1"], None)


@pytest.mark.parametrize(("who", "status"), [("viewer", 403), ("outsider", 404)])
def test_only_an_operator_of_the_team_creates_deployments(request, team, who, status):
    user = request.getfixturevalue(who)

    response = post_json(client_for(user), "/api/deployments", {"name": "Churn", "team": team.slug, "feature_names": ["a"], "class_labels": ["x", "y"]})

    assert response.status_code == status
    assert not team.deployments.exists()


def test_an_invalid_deployment_is_422_with_field_errors(team, operator):
    response = post_json(client_for(operator), "/api/deployments", {"name": "Churn", "team": team.slug, "feature_names": ["a", "a"], "class_labels": ["x"]})

    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"feature_names", "class_labels"}


def test_an_operator_uploads_a_labelled_csv(deployment, operator):
    _, _, X_test, y_test = breast_cancer_split()
    rows = [[*map(float, x), int(y)] for x, y in zip(X_test[:50], y_test[:50])]

    response = client_for(operator).post(
        "/api/deployments/tumour/datasets",
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
        "/api/deployments/tumour/datasets", {"file": csv_upload(rows, FEATURES), "kind": "reference"}
    )

    assert response.status_code == 422
    assert response.json()["detail"] == "Line 3, column 'f7': 'abc' is not a number."
    assert response.json()["errors"] == [{"row": None, "line": 3, "field": "f7", "message": "Line 3, column 'f7': 'abc' is not a number."}]
    assert Dataset.objects.count() == datasets_before


# ---------------------------------------------------------------- alerts and jobs


def test_members_see_alerts(deployment, viewer):
    services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="3 of 30 features drifted")

    response = client_for(viewer).get("/api/deployments/tumour/alerts?unresolved=true")

    assert response.status_code == 200
    assert [(a["kind"], a["status"], a["title"]) for a in response.json()] == [("data_drift", "open", "3 of 30 features drifted")]


def test_an_operator_queues_a_job_and_polls_it(deployment, operator, viewer):
    queued = post_json(client_for(operator), "/api/deployments/tumour/jobs", {"kind": "retrain"})

    assert queued.status_code == 201, queued.content
    job = queued.json()
    assert (job["kind"], job["status"], job["source_version"], job["requested_by"]) == ("retrain", "queued", 1, "oscar")
    polled = client_for(viewer).get(f"/api/jobs/{job['id']}")
    assert polled.status_code == 200 and polled.json()["progress"] == 0
    assert [j["id"] for j in client_for(viewer).get("/api/deployments/tumour/jobs").json()] == [job["id"]]


def test_a_viewer_cannot_queue_jobs_and_an_outsider_cannot_see_them(deployment, operator, viewer, outsider):
    job = services.job_queue(version=deployment.active_version(), kind=MaintenanceJob.Kind.RETRAIN, by=operator)

    response = post_json(client_for(viewer), "/api/deployments/tumour/jobs", {"kind": "retrain"})

    assert response.status_code == 403
    assert MaintenanceJob.objects.count() == 1
    assert client_for(outsider).get(f"/api/jobs/{job.pk}").status_code == 404


def test_a_job_that_does_not_apply_to_the_graph_is_422_with_the_reason(deployment, operator):
    response = post_json(client_for(operator), "/api/deployments/tumour/jobs", {"kind": "compress_int8"})

    assert response.status_code == 422
    assert "does not apply" in response.json()["detail"] and "LinearClassifier" in response.json()["detail"]
    assert not MaintenanceJob.objects.exists()


def test_job_settings_out_of_bounds_are_422(mlp_deployment, operator):
    response = post_json(client_for(operator), "/api/deployments/digits/jobs", {"kind": "compress_prune", "params": {"sparsity": 1.5}})

    assert response.status_code == 422
    assert response.json()["detail"] == "sparsity must be between 0.01 and 0.99, not 1.5."
    assert not MaintenanceJob.objects.exists()


def test_an_unknown_job_kind_is_422(deployment, operator):
    response = post_json(client_for(operator), "/api/deployments/tumour/jobs", {"kind": "defragment"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "kind"
    assert not MaintenanceJob.objects.exists()
