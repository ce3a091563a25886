"""dashboard/api/ingestion.py: predictions and labels by token, their limits and errors, and the tokens themselves."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from monitoring import services
from monitoring.models import (
    Prediction,
    PredictionBatch,
)
from tests.conftest import FEATURES, breast_cancer_split
from tests.dashboard.api.helpers import bearer, client_for, post_json, prediction_rows

# ---------------------------------------------------------------- ingestion and tokens


def test_it_ingests_predictions_with_the_deployments_token(deployment, token):
    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(10)}, **bearer(token))

    assert response.status_code == 201, response.content
    batch = PredictionBatch.objects.get()
    assert response.json() == {"batch_id": batch.pk, "received": 10, "created": 10, "replayed": False, "status": "indexed"}
    assert response["Location"] == f"/api/v1/deployments/tumour/batches/{batch.pk}"
    assert deployment.predictions.count() == 10


def test_a_large_batch_status_says_pending_then_indexed(deployment, token, deferred):
    accepted = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(4)}, **bearer(token))
    url = f"/api/v1/deployments/tumour/batches/{accepted.json()['batch_id']}"

    # Stored but not indexed yet: 202, and Location is where to poll.
    assert (accepted.status_code, accepted["Location"]) == (202, url)
    pending = Client().get(url, **bearer(token)).json()
    services.batches_index(deployment_id=deployment.pk)
    indexed = Client().get(url, **bearer(token)).json()

    assert (pending["status"], pending["indexed_at"], pending["n_rows"]) == ("pending", None, 4)
    assert (indexed["status"], indexed["errors"]) == ("indexed", [])
    assert indexed["indexed_at"] is not None


def test_a_rejected_batch_status_names_the_rows(deployment, token, deferred):
    post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(3)}, **bearer(token))
    late = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(3, start=1)}, **bearer(token))
    services.batches_index(deployment_id=deployment.pk)

    status = Client().get(f"/api/v1/deployments/tumour/batches/{late.json()['batch_id']}", **bearer(token)).json()

    assert status["status"] == "rejected"
    assert [(e["row"], e["field"]) for e in status["errors"]] == [(0, "id"), (1, "id")]
    assert "already stored" in status["message"]


@pytest.mark.parametrize("prefer", ["respond-async", "return=minimal, Respond-Async; x=1"])
def test_a_batch_sent_with_prefer_respond_async_is_stored_and_its_ids_left_to_the_indexer(deployment, token, prefer):
    accepted = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(4)},
                         **bearer(token), HTTP_PREFER=prefer)

    assert accepted.status_code == 202, accepted.content
    assert accepted["Preference-Applied"] == "respond-async"
    assert accepted.json()["status"] == "pending"
    batch = PredictionBatch.objects.get()
    assert (batch.n_rows, batch.state) == (4, PredictionBatch.State.PENDING)
    assert not deployment.predictions.exists()  # the indexer's work, not this request's


def test_labels_sent_before_the_indexer_took_their_batch_still_join(deployment, token):
    post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(4)},
              **bearer(token), HTTP_PREFER="respond-async")

    labelled = post_json(Client(), "/api/v1/deployments/tumour/labels",
                         {"labels": [{"id": "req-1", "label": "1"}, {"id": "req-3", "label": "0"}]}, **bearer(token))

    assert labelled.status_code == 200, labelled.content
    assert labelled.json() == {"received": 2, "updated": 2}
    assert dict(deployment.predictions.filter(label_index__isnull=False).values_list("request_id", "label_index")) == {
        "req-1": 1, "req-3": 0}
    assert PredictionBatch.objects.get().state == PredictionBatch.State.INDEXED


def test_a_preference_other_than_respond_async_keeps_the_immediate_answer(deployment, token):
    post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(3)}, **bearer(token))

    reused = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(3, start=2)},
                       **bearer(token), HTTP_PREFER="return=minimal")

    assert reused.status_code == 409
    assert "Preference-Applied" not in reused
    assert deployment.predictions.count() == 3 and PredictionBatch.objects.count() == 1


def test_a_batch_of_another_deployment_or_unknown_is_404(deployment, token, other_deployment):
    theirs = services.predictions_ingest(deployment=other_deployment, rows=prediction_rows(2))

    for batch_id in (theirs.batch_id, 999_999):
        response = Client().get(f"/api/v1/deployments/tumour/batches/{batch_id}", **bearer(token))
        assert response.status_code == 404
        assert response.json()["detail"] == f"This deployment has no batch {batch_id}."
    assert Client().get(f"/api/v1/deployments/theirs/batches/{theirs.batch_id}", **bearer(token)).status_code == 403


def test_a_retried_batch_is_stored_once(deployment, token):
    body = {"predictions": prediction_rows(10)}
    first = post_json(Client(), "/api/v1/deployments/tumour/predictions", body, **bearer(token))

    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", body, **bearer(token))

    assert (first.status_code, response.status_code) == (201, 201)  # answered as the first time
    assert response["Location"] == first["Location"]
    assert response.json() == first.json() | {"replayed": True}
    assert response["Idempotent-Replayed"] == "true"
    assert deployment.predictions.count() == 10


def test_a_retry_with_the_same_idempotency_key_is_answered_without_storing(deployment, token):
    key = {"HTTP_IDEMPOTENCY_KEY": "3f0c5a7e-batch-1"}
    first = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(10)}, **bearer(token), **key)

    # A client that rebuilt its batch (other spacing, keys in another order) but kept the key: the same batch.
    rebuilt = json.dumps({"predictions": [dict(reversed(row.items())) for row in prediction_rows(10)]}, indent=2)
    again = Client().post("/api/v1/deployments/tumour/predictions", rebuilt, content_type="application/json", **bearer(token), **key)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() | {"replayed": True}
    assert deployment.predictions.count() == 10


def test_an_idempotency_key_reused_with_other_rows_is_422_and_stores_nothing(deployment, token):
    key = {"HTTP_IDEMPOTENCY_KEY": "3f0c5a7e-batch-1"}
    first = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(10)}, **bearer(token), **key)

    again = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(11)}, **bearer(token), **key)

    assert (first.status_code, again.status_code) == (201, 422)
    assert again.json()["detail"].startswith("Idempotency-Key reused with a different body")
    assert deployment.predictions.count() == 10
    assert PredictionBatch.objects.count() == 1


def test_a_new_batch_reusing_stored_ids_is_409_naming_the_rows(deployment, token):
    post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(3)}, **bearer(token))

    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(3, start=2)}, **bearer(token))

    assert response.status_code == 409
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [(0, "id")]
    assert deployment.predictions.count() == 3


def test_a_batch_over_the_row_limit_is_413(deployment, token, settings):
    settings.MAX_PREDICTION_BATCH = 5

    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(6)}, **bearer(token))

    assert response.status_code == 413
    assert response.json()["detail"] == "The batch has 6 predictions; the limit is 5."
    assert not Prediction.objects.exists()


def test_a_wrong_feature_count_is_422_naming_row_and_field(deployment, token):
    rows = prediction_rows(4)
    rows[1]["features"] = [1.0, 2.0]

    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": rows}, **bearer(token))

    assert response.status_code == 422
    assert [(e["row"], e["field"], e["message"]) for e in response.json()["errors"]] == [(1, "features", "expected 30 values, got 2")]
    assert not PredictionBatch.objects.exists()


def test_a_csv_upload_stores_a_batch_and_a_label_file_joins_it(deployment, token):
    _, _, X_test, _ = breast_cancer_split()
    header = ",".join(["id", "timestamp", "predicted_label", *FEATURES])
    lines = [header] + [",".join([f"u-{i}", "2025-03-01T12:00:00", "1", *map(str, X_test[i])]) for i in range(25)]
    upload = SimpleUploadedFile("traffic.csv", "\n".join(lines).encode(), content_type="text/csv")

    response = Client().post("/api/v1/deployments/tumour/predictions/upload", {"file": upload}, **bearer(token))
    labels = SimpleUploadedFile("labels.csv", b"id,label\nu-0,0\nu-3,1\n", content_type="text/csv")
    labelled = Client().post("/api/v1/deployments/tumour/labels/upload", {"file": labels}, **bearer(token))

    assert response.status_code == 201, response.content
    assert (response.json()["created"], labelled.json()) == (25, {"received": 2, "updated": 2})
    assert deployment.predictions.count() == 25
    assert dict(deployment.predictions.exclude(label_index=None).values_list("request_id", "label_index")) == {"u-0": 0, "u-3": 1}


def test_a_file_sent_as_the_request_body_is_stored_like_a_form_upload(deployment, token):
    _, _, X_test, _ = breast_cancer_split()
    header = ",".join(["id", "timestamp", "predicted_label", *FEATURES])
    lines = [header] + [",".join([f"raw-{i}", "2025-03-01T12:00:00", "1", *map(str, X_test[i])]) for i in range(7)]

    response = Client().post("/api/v1/deployments/tumour/predictions/upload", "\n".join(lines).encode(),
                             content_type="text/csv", **bearer(token))
    empty = Client().post("/api/v1/deployments/tumour/predictions/upload", b"", content_type="text/csv", **bearer(token))

    assert response.status_code == 201, response.content
    assert response.json()["created"] == 7
    assert PredictionBatch.objects.get().source == PredictionBatch.Source.UPLOAD
    assert (empty.status_code, empty.json()["detail"]) == (422, "Send the file as a multipart field named file, or as the request body.")


@pytest.mark.parametrize("path", ["predictions/upload", "labels/upload"])
def test_a_file_sent_as_a_url_encoded_form_is_415_saying_what_to_send(deployment, token, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10  # Django would otherwise parse it as form fields and call it too large

    response = Client().post(f"/api/v1/deployments/tumour/{path}", b"id,timestamp\nr-1,2025-03-01",
                             content_type="application/x-www-form-urlencoded", **bearer(token))

    assert response.status_code == 415
    assert "Content-Type: application/vnd.apache.parquet or text/csv" in response.json()["detail"]
    assert not PredictionBatch.objects.exists()


def test_a_raw_body_over_the_byte_limit_is_413_and_stores_nothing(deployment, token, settings):
    settings.MAX_UPLOAD_BYTES = 100

    response = Client().post("/api/v1/deployments/tumour/predictions/upload", b"id," * 100, content_type="text/csv", **bearer(token))

    assert response.status_code == 413
    assert not PredictionBatch.objects.exists()


def test_an_upload_over_the_byte_limit_is_413(deployment, token, settings):
    settings.MAX_UPLOAD_BYTES = 100
    upload = SimpleUploadedFile("traffic.csv", b"id," * 100, content_type="text/csv")

    response = Client().post("/api/v1/deployments/tumour/predictions/upload", {"file": upload}, **bearer(token))

    assert response.status_code == 413
    assert "the limit is 100" in response.json()["detail"]


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ({}, "the deployment's ingestion token (wk_…)"),
        ({"HTTP_AUTHORIZATION": "Bearer wk_deadbeef_not-the-secret"}, "not valid, or it has been revoked"),
        ({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, "the deployment's ingestion token (wk_…)"),
    ],
    ids=["missing", "wrong", "not-bearer"],
)
def test_ingestion_without_a_valid_token_is_401(deployment, token, header, detail):
    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **header)

    assert response.status_code == 401
    assert detail in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Prediction.objects.exists()


def test_a_revoked_token_is_refused(deployment, operator, token):
    services.token_revoke(token=deployment.api_tokens.get(), by=operator)

    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **bearer(token))

    assert response.status_code == 401
    assert not Prediction.objects.exists()


def test_a_token_of_another_deployment_is_refused(deployment, other_deployment, outsider):
    _, theirs = services.token_create(deployment=other_deployment, name="theirs", by=outsider)

    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **bearer(theirs))

    assert response.status_code == 403
    assert response.json()["detail"] == "This API token belongs to another deployment."
    assert not Prediction.objects.exists()


def test_a_session_does_not_open_the_ingestion_endpoints(deployment, approver):
    response = post_json(client_for(approver), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(1)})

    assert response.status_code == 401
    assert not Prediction.objects.exists()


def test_a_nan_feature_is_422_naming_row_and_field(deployment, token):
    rows = prediction_rows(3)
    rows[2]["features"]["f4"] = float("nan")

    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": rows}, **bearer(token))

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["row"], error["field"]) == (2, "features.f4")
    assert "finite" in error["message"]
    assert not Prediction.objects.exists()


def test_a_body_that_is_not_json_is_400(deployment, token):
    response = Client().post("/api/v1/deployments/tumour/predictions", data=b"{not json", content_type="application/json", **bearer(token))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body is not valid JSON")


def test_a_body_without_the_predictions_list_is_422(deployment, token):
    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", prediction_rows(1), **bearer(token))

    assert response.status_code == 422
    assert response.json()["detail"] == 'The body must be a JSON object with a "predictions" list.'


def test_an_oversized_body_is_413(deployment, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5_000
    body = {"predictions": prediction_rows(20)}

    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", body, **bearer(token))

    assert response.status_code == 413
    assert "the limit is 5000" in response.json()["detail"]
    assert not Prediction.objects.exists()


def test_labels_attach_to_stored_predictions(deployment, token):
    post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(3)}, **bearer(token))

    response = post_json(
        Client(), "/api/v1/deployments/tumour/labels", {"labels": [{"id": "req-0", "label": "1"}, {"id": "req-1", "label": "0"}]},
        **bearer(token),
    )

    assert response.status_code == 200
    assert response.json() == {"received": 2, "updated": 2}
    assert dict(deployment.predictions.exclude(label_index=None).values_list("request_id", "label_index")) == {"req-0": 1, "req-1": 0}


def test_labels_for_an_unknown_id_store_nothing(deployment, token):
    post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **bearer(token))

    response = post_json(
        Client(), "/api/v1/deployments/tumour/labels", {"labels": [{"id": "req-0", "label": "1"}, {"id": "ghost", "label": "0"}]},
        **bearer(token),
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [{"row": 1, "line": None, "field": "id", "message": "no prediction with id 'ghost'"}]
    assert not deployment.predictions.exclude(label_index=None).exists()


def test_an_operator_creates_lists_and_revokes_tokens(deployment, operator):
    client = client_for(operator)

    created = post_json(client, "/api/v1/deployments/tumour/tokens", {"name": "batch scorer"})
    assert created.status_code == 201
    plaintext = created.json()["token"]
    assert post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(1)}, **bearer(plaintext)).status_code == 201

    listed = client.get("/api/v1/deployments/tumour/tokens").json()["items"]
    assert [(t["name"], t["prefix"], t["revoked_at"]) for t in listed] == [("batch scorer", created.json()["prefix"], None)]
    assert plaintext.split("_", 2)[2] not in json.dumps(listed)

    revoked = client.delete(f"/api/v1/deployments/tumour/tokens/{created.json()['prefix']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(1, start=1)}, **bearer(plaintext)).status_code == 401


def test_a_viewer_cannot_create_tokens(deployment, viewer):
    response = post_json(client_for(viewer), "/api/v1/deployments/tumour/tokens", {"name": "mine"})

    assert response.status_code == 403
    assert not deployment.api_tokens.exists()


# ---------------------------------------------------------------- personal and service tokens


@pytest.mark.parametrize("kind", ["personal", "service"])
def test_an_operators_personal_or_service_token_sends_predictions_and_labels(deployment, operator, approver, kind):
    if kind == "personal":
        _, raw = services.personal_token_create(user=operator, name="ci")
    else:
        _, raw = services.service_token_create(team=deployment.team, name="scorer", role="operator", by=approver)

    sent = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(4)}, **bearer(raw))
    labelled = post_json(Client(), "/api/v1/deployments/tumour/labels", {"labels": [{"id": "req-0", "label": "1"}]},
                         **bearer(raw))

    assert sent.status_code == 201, sent.content
    assert labelled.json() == {"received": 1, "updated": 1}
    assert deployment.predictions.count() == 4


@pytest.mark.parametrize("kind", ["personal", "service"])
def test_a_viewers_token_is_403_and_stores_nothing(deployment, viewer, approver, kind):
    if kind == "personal":
        _, raw = services.personal_token_create(user=viewer, name="ci")
    else:
        _, raw = services.service_token_create(team=deployment.team, name="reader", role="viewer", by=approver)

    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": prediction_rows(4)}, **bearer(raw))

    assert response.status_code == 403
    assert "operator" in response.json()["detail"]
    assert not PredictionBatch.objects.exists()


# ---------------------------------------------------------------- the columnar batch (application/x-npz)


def _npz(n: int = 5, *, start: int = 0, compressed: bool = False, **override) -> bytes:
    import io

    import numpy as np

    _, _, X_test, _ = breast_cancer_split()
    arrays = {
        "ids": np.frombuffer("\n".join(f"req-{start + i}" for i in range(n)).encode(), dtype=np.uint8),
        "timestamp_us": np.full(n, 1_740_830_400_000_000, dtype=np.int64),
        "features": np.asarray(X_test[start:start + n], dtype=np.float32),
        "predicted_label": np.zeros(n, dtype=np.int64),
    } | override
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **{k: v for k, v in arrays.items() if v is not None})
    return buffer.getvalue()


def _post_npz(body: bytes, token: str, query: str = "", **headers):
    return Client().post(f"/api/v1/deployments/tumour/predictions{query}", body, content_type="application/x-npz",
                         **bearer(token), **headers)


def test_a_columnar_batch_is_stored_like_the_same_json_rows(deployment, token, candidate_v2):
    columnar = _post_npz(_npz(5), token, "?version=2", HTTP_IDEMPOTENCY_KEY="k-1")
    replay = _post_npz(_npz(5), token, "?version=2", HTTP_IDEMPOTENCY_KEY="k-1")
    rows = prediction_rows(5, start=5)
    as_json = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": rows}, **bearer(token))

    assert columnar.status_code == 201, columnar.content
    assert (replay.status_code, replay["Idempotent-Replayed"]) == (201, "true")
    assert as_json.status_code == 201
    first, second = PredictionBatch.objects.order_by("pk")
    assert first.version.number == 2 and first.n_rows == 5 and second.version.number == 1
    assert bytes(first.predicted) == bytes(second.predicted)
    assert len(bytes(first.features)) == len(bytes(second.features)) == 5 * len(FEATURES) * 4
    assert sorted(deployment.predictions.values_list("request_id", flat=True)) == sorted(f"req-{i}" for i in range(10))


def test_a_columnar_batch_reusing_ids_with_respond_async_is_rejected_by_the_indexer_and_its_retry_is_409(deployment, token):
    import numpy as np

    first = _post_npz(_npz(5), token, HTTP_IDEMPOTENCY_KEY="first", HTTP_PREFER="respond-async")
    # Ids req-0..req-4 again, with other features: a new batch, not a retry.
    reused = _post_npz(_npz(5, features=np.full((5, len(FEATURES)), 0.5, dtype=np.float32)), token,
                       HTTP_IDEMPOTENCY_KEY="second", HTTP_PREFER="respond-async")
    services.batches_index(deployment_id=deployment.pk)
    retried = _post_npz(_npz(5, features=np.full((5, len(FEATURES)), 0.5, dtype=np.float32)), token,
                        HTTP_IDEMPOTENCY_KEY="second", HTTP_PREFER="respond-async")

    assert (first.status_code, reused.status_code) == (202, 202)  # the verdict on the ids comes later
    assert retried.status_code == 409
    assert [(e["row"], e["field"]) for e in retried.json()["errors"]][:2] == [(0, "id"), (1, "id")]
    kept, rejected = PredictionBatch.objects.order_by("pk")
    assert (kept.state, rejected.state) == (PredictionBatch.State.INDEXED, PredictionBatch.State.REJECTED)
    assert set(deployment.predictions.values_list("batch_id", flat=True)) == {kept.pk}
    assert bytes(rejected.features) == b""  # nothing of it counts in a window


@pytest.mark.parametrize(("body", "status", "field"), [
    (lambda np: _npz(compressed=True), 422, "ids"),
    (lambda np: _npz(features=np.full((5, 2), 0.5, dtype=np.float32)), 422, "features"),
    (lambda np: _npz(features=np.full((5, len(FEATURES)), np.nan, dtype=np.float32)), 422, "features"),
    (lambda np: _npz(predicted_label=np.full(5, 7, dtype=np.int64)), 422, "predicted_label"),
    (lambda np: _npz(probabilities=np.full((5, 2), 1.5, dtype=np.float32)), 422, "probabilities"),
    (lambda np: _npz(ids=np.frombuffer(b"a\na\nb\nc\nd", dtype=np.uint8)), 422, "id"),
    (lambda np: _npz(timestamp_us=None), 422, "timestamp_us"),
    (lambda np: _npz(extra=np.zeros(5)), 422, "extra"),
    (lambda np: b"PK not a zip", 422, None),
    (lambda np: _npz(3, features=np.zeros((10_001, len(FEATURES)), dtype=np.float32)), 413, None),
], ids=["compressed", "features-shape", "nan", "unknown-label", "probability", "duplicate-id", "no-timestamps",
        "unknown-member", "not-a-zip", "too-many-rows"])
def test_a_bad_columnar_batch_is_refused_naming_the_field_and_stores_nothing(deployment, token, body, status, field):
    import numpy as np

    response = _post_npz(body(np), token)

    assert response.status_code == status, response.content
    if field is not None:
        assert field in [e["field"] for e in response.json()["errors"]]
    assert not PredictionBatch.objects.exists() and not Prediction.objects.exists()


def test_a_columnar_batch_naming_no_version_of_the_deployment_is_422(deployment, token):
    response = _post_npz(_npz(), token, "?version=9")

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["version"]
    assert not PredictionBatch.objects.exists()


@pytest.fixture
def candidate_v2(deployment, operator):
    from tests.conftest import trained_model

    return services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)
