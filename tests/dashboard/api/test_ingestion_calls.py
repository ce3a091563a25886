"""The serving client's calls (latency, calls, errors) on the prediction batch endpoint: both wire formats, a
report without rows, and refusals that name the field and store nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.test import Client

from monitoring import callstats
from monitoring.models import CallStats, Prediction, PredictionBatch
from tests.conftest import breast_cancer_split
from tests.dashboard.api.helpers import bearer, post_json, prediction_rows

URL = "/api/v1/deployments/tumour/predictions"


def _npz(n: int = 5, **override) -> bytes:
    _, _, X_test, _ = breast_cancer_split()
    arrays = {
        "ids": np.frombuffer("\n".join(f"req-{i}" for i in range(n)).encode(), dtype=np.uint8),
        "timestamp_us": np.full(n, 1_740_830_400_000_000, dtype=np.int64),
        "features": np.asarray(X_test[:n], dtype=np.float32),
        "predicted_label": np.zeros(n, dtype=np.int64),
    } | override
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if v is not None})
    return buffer.getvalue()


def _post_npz(body: bytes, token: str, query: str = ""):
    return Client().post(URL + query, body, content_type="application/x-npz", **bearer(token))


def _stored() -> tuple[int, int, int]:
    return PredictionBatch.objects.count(), Prediction.objects.count(), CallStats.objects.count()


def test_a_json_batch_stores_its_calls_in_one_row_with_the_batch(deployment, token):
    body = {"predictions": prediction_rows(10), "latency_us": [800, 1200, 5000], "calls": 4, "errors": 1,
            "instance": "pod-3"}
    response = post_json(Client(), URL, body, **bearer(token))

    assert response.status_code == 201, response.content
    batch, stats = PredictionBatch.objects.get(), CallStats.objects.get()
    assert (stats.batch_id, stats.version.number, stats.instance) == (batch.pk, 1, "pod-3")
    assert (stats.calls, stats.errors, stats.at) == (4, 1, batch.t_max)
    histogram = np.frombuffer(bytes(stats.latency_histogram), dtype="<u4")
    assert histogram.tolist() == callstats.histogram_of(np.array([800, 1200, 5000])).tolist()


def test_a_columnar_batch_stores_its_calls_and_a_replay_stores_them_once(deployment, token):
    body = _npz(latency_us=np.array([300, 900], dtype=np.int64), calls=np.array(2), errors=np.array(0))
    first = _post_npz(body, token, "?version=1&instance=pod-9")
    replay = _post_npz(body, token, "?version=1&instance=pod-9")

    assert (first.status_code, replay.status_code, replay["Idempotent-Replayed"]) == (201, 201, "true")
    stats = CallStats.objects.get()
    assert (stats.batch_id, stats.calls, stats.errors, stats.instance) == (first.json()["batch_id"], 2, 0, "pod-9")
    assert int(np.frombuffer(bytes(stats.latency_histogram), dtype="<u4").sum()) == 2


def test_a_batch_from_an_older_client_without_calls_is_stored_without_them(deployment, token):
    assert post_json(Client(), URL, {"predictions": prediction_rows(3)}, **bearer(token)).status_code == 201
    assert _post_npz(_npz(2, ids=np.frombuffer(b"x-1\nx-2", dtype=np.uint8)), token).status_code == 201
    assert _stored() == (2, 5, 0)


@pytest.mark.parametrize("columnar", [False, True], ids=["json", "npz"])
def test_a_report_of_failed_calls_without_rows_is_stored_alone(deployment, token, columnar):
    if columnar:
        buffer = io.BytesIO()
        np.savez(buffer, calls=np.array(7), errors=np.array(7))
        response = _post_npz(buffer.getvalue(), token, "?version=1&instance=pod-1")
    else:
        response = post_json(Client(), URL, {"predictions": [], "calls": 7, "errors": 7, "version": 1,
                                             "instance": "pod-1"}, **bearer(token), HTTP_IDEMPOTENCY_KEY="errs-1")

    assert response.status_code == 201, response.content
    assert response.json() == {"batch_id": None, "received": 0, "created": 0, "replayed": False, "status": "indexed"}
    assert not response.has_header("Location")
    stats = CallStats.objects.get()
    assert (stats.batch_id, stats.calls, stats.errors, stats.version.number, stats.instance) == (None, 7, 7, 1, "pod-1")
    assert not PredictionBatch.objects.exists()


def test_a_report_without_rows_sent_again_with_its_key_is_stored_once(deployment, token):
    body = {"predictions": [], "errors": 3, "version": 1}
    first = post_json(Client(), URL, body, **bearer(token), HTTP_IDEMPOTENCY_KEY="e-1")
    again = post_json(Client(), URL, body, **bearer(token), HTTP_IDEMPOTENCY_KEY="e-1")
    other = post_json(Client(), URL, body, **bearer(token), HTTP_IDEMPOTENCY_KEY="e-2")

    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 201)
    assert (first.json()["replayed"], again.json()["replayed"], again["Idempotent-Replayed"]) == (False, True, "true")
    assert list(CallStats.objects.values_list("calls", "errors")) == [(3, 3), (3, 3)]


@pytest.mark.parametrize(("extra", "field"), [
    ({"calls": -1}, "calls"),
    ({"calls": "12"}, "calls"),
    ({"calls": 3, "errors": 4}, "errors"),
    ({"errors": True}, "errors"),
    ({"latency_us": [100, -5]}, "latency_us"),
    ({"latency_us": [100, None]}, "latency_us"),
    ({"latency_us": {"p95": 3}}, "latency_us"),
    ({"latency_us": [1, 2, 3], "calls": 2}, "latency_us"),
    ({"instance": ""}, "instance"),
    ({"instance": "x" * 129}, "instance"),
    ({"instance": 7}, "instance"),
])
def test_a_json_batch_with_a_bad_call_field_is_422_naming_it_and_stores_nothing(deployment, token, extra, field):
    response = post_json(Client(), URL, {"predictions": prediction_rows(4)} | extra, **bearer(token))

    assert response.status_code == 422, response.content
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert field in response.json()["detail"]
    assert _stored() == (0, 0, 0)


def test_a_report_without_rows_that_counts_no_calls_is_422(deployment, token):
    response = post_json(Client(), URL, {"predictions": [], "calls": 0}, **bearer(token))
    empty = post_json(Client(), URL, {"predictions": []}, **bearer(token))

    assert response.status_code == 422 and empty.status_code == 422
    assert _stored() == (0, 0, 0)


def _report_npz(**arrays) -> bytes:
    buffer = io.BytesIO()  # no row members: a report of calls alone
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(("body", "query", "status", "field"), [
    (lambda: _npz(calls=np.array([1, 2])), "", 422, "calls"),
    (lambda: _npz(calls=np.array(1.0)), "", 422, "calls"),
    (lambda: _npz(errors=np.array(-1)), "", 422, "errors"),
    (lambda: _npz(calls=np.array(1), errors=np.array(2)), "", 422, "errors"),
    (lambda: _npz(latency_us=np.array([1.0, np.inf])), "", 422, "latency_us"),
    (lambda: _npz(latency_us=np.zeros((2, 2))), "", 422, "latency_us"),
    (lambda: _npz(latency_us=np.array(["fast"])), "", 422, "latency_us"),
    (lambda: _npz(latency_us=np.zeros(10_001)), "", 413, None),
    (lambda: _report_npz(calls=np.array(0)), "", 422, "calls"),
    (lambda: _report_npz(calls=np.array(3), errors=np.array(1), extra=np.zeros(1)), "", 422, "extra"),
    (lambda: _npz(calls=np.array(2)), "?instance=" + "x" * 129, 422, "instance"),
], ids=["calls-shape", "calls-float", "errors-negative", "errors-over-calls", "latency-inf", "latency-2d",
        "latency-text", "latency-too-long", "report-of-no-calls", "report-unknown-member", "instance-too-long"])
def test_a_columnar_batch_with_a_bad_call_member_is_refused_naming_it_and_stores_nothing(
    deployment, token, body, query, status, field
):
    response = _post_npz(body(), token, query)

    assert response.status_code == status, response.content
    if field is not None:
        assert field in [e["field"] for e in response.json()["errors"]]
    assert _stored() == (0, 0, 0)


def test_a_report_the_database_refuses_stores_no_batch_either(deployment, token, monkeypatch):
    """The calls are written in the batch's transaction: when their row fails, the batch is not stored."""
    from django.db import IntegrityError

    def refuse(**fields):
        raise IntegrityError("callstats refused")

    monkeypatch.setattr(CallStats.objects, "create", refuse)
    with pytest.raises(IntegrityError):
        post_json(Client(), URL, {"predictions": prediction_rows(3), "calls": 3, "latency_us": [1, 2, 3]}, **bearer(token))
    assert _stored() == (0, 0, 0)
