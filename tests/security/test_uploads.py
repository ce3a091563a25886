"""Bad input to every way in: oversized and chunked bodies, Parquet and CSV bombs, deep JSON, markup in slugs
and feature names, a reused Idempotency-Key, a long dataset name, and datasets as Parquet.

Everything goes through the real stack (Django's test client: middleware, CSRF, ninja, the services, Postgres).
Each refusal is checked for its status, its message, and that it left nothing behind: no row, no blob in
MEDIA_ROOT, no upload temp file, no audit event.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import resource
import socket
import subprocess
import sys
import time
from datetime import timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import resolve, reverse
from django.utils import timezone
from sklearn.linear_model import LogisticRegression

from dashboard.middleware import UPLOAD_ROUTES
from monitoring import services
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import (
    AuditEvent,
    Dataset,
    Deployment,
    ModelVersion,
    Prediction,
    PredictionBatch,
)
from tests.conftest import CLASSES, FEATURES, breast_cancer_split
from tests.workers.conftest import ingest_traffic
from workers.drift_check import check_drift

# A made-up CSRF cookie of the right shape: CsrfViewMiddleware then parses the form to find the token.
FAKE_CSRF = "A" * 32


@pytest.fixture
def token(deployment, operator) -> str:
    _, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)
    return plaintext


@pytest.fixture
def upload_temp_dir(settings, tmp_path) -> Path:
    """Where Django streams multipart files it parses (every file part over 1 KB here)."""
    directory = tmp_path / "upload-temp"
    directory.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(directory)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    return directory


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def browser_with_fake_csrf_cookie() -> Client:
    client = Client(enforce_csrf_checks=True)  # as a browser is: the CSRF check runs, and reads the form
    client.cookies["csrftoken"] = FAKE_CSRF
    return client


def blob_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def multipart(fields: dict[str, bytes | str], boundary: str = "wkboundary") -> tuple[bytes, str]:
    """A multipart/form-data body, each bytes value as a file part."""
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{name}.bin"\r\nContent-Type: application/octet-stream'
            parts.append(f"--{boundary}\r\n{head}\r\n\r\n".encode() + value + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Unreadable(io.RawIOBase):
    """A request stream that fails the test if anything reads it."""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")

    readline = read


def chunked(body: bytes) -> dict:
    """The WSGI environ of a chunked body on a server that ends the stream (gunicorn): no Content-Length."""
    return {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- body caps, before parsing


def test_a_login_post_declaring_a_multi_gigabyte_body_is_413_unread(db, upload_temp_dir, approver):
    body, content_type = multipart({"username": "alice", "password": "correct-horse-battery"})

    response = browser_with_fake_csrf_cookie().post(
        "/login/", body, content_type=content_type, CONTENT_LENGTH=str(5 * 1024**3), **{"wsgi.input": Unreadable()}
    )

    assert response.status_code == 413
    page = response.content.decode()
    assert "The request body is 5368709120 bytes; the limit is 33554432 bytes (32.0 MB)." in page
    assert "This page takes at most 32.0 MB" in page
    assert list(upload_temp_dir.iterdir()) == []
    approver.refresh_from_db()
    assert approver.last_login is None


@pytest.mark.parametrize("url", [
    "/d/tumour/datasets/new", "/d/no-such-deployment/versions/new", "/api/v1/deployments/tumour/versions",
    "/api/v1/deployments/nope/datasets", "/api/v1/deployments/tumour/predictions/upload",
])
def test_an_anonymous_upload_gets_only_the_small_cap(deployment, settings, upload_temp_dir, url):
    # The large caps are for a logged-in user or a live token: the CSRF check would parse the body first.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    body, content_type = multipart({"kind": "reference", "file": b"x" * 200_000})
    headers = {"HTTP_AUTHORIZATION": "Bearer wk_madeup_notatoken"} if "predictions" in url else {}
    versions, datasets, events = ModelVersion.objects.count(), Dataset.objects.count(), AuditEvent.objects.count()

    response = browser_with_fake_csrf_cookie().post(url, body, content_type=content_type, **headers)

    assert response.status_code == 413
    assert "the limit is 65536 bytes (64.0 KB)" in response.content.decode()
    assert list(upload_temp_dir.iterdir()) == []
    assert (ModelVersion.objects.count(), Dataset.objects.count(), AuditEvent.objects.count()) == (versions, datasets, events)


def test_a_logged_in_operator_keeps_the_large_upload_cap(deployment, operator, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    client = Client()
    client.force_login(operator)
    rows = ",".join(FEATURES) + ",label\n" + (",".join(["0.5"] * len(FEATURES)) + ",1\n") * 2000

    response = client.post("/api/v1/deployments/tumour/datasets", {
        "kind": "evaluation", "file": SimpleUploadedFile("big.csv", rows.encode(), content_type="text/csv"),
    })

    assert len(rows) > 64 * 1024
    assert response.status_code == 201, response.content


def test_a_multipart_body_over_the_cap_on_the_login_page_is_413_and_no_temp_file_is_written(db, settings, upload_temp_dir):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    body, content_type = multipart({"username": "alice", "filler": b"x" * 200_000})

    response = browser_with_fake_csrf_cookie().post("/login/", body, content_type=content_type)

    assert response.status_code == 413
    assert "the limit is 65536 bytes (64.0 KB)" in response.content.decode()
    assert list(upload_temp_dir.iterdir()) == []


def test_a_chunked_form_over_the_cap_is_413_once_read_past_it(db, settings, upload_temp_dir):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    body = b"username=alice&password=" + b"x" * 200_000

    response = browser_with_fake_csrf_cookie().post(
        "/login/", body, content_type="application/x-www-form-urlencoded", **chunked(body)
    )

    assert response.status_code == 413
    assert "The request body is larger than the limit of 65536 bytes (64.0 KB)." in response.content.decode()
    assert list(upload_temp_dir.iterdir()) == []


def test_an_api_body_declared_over_the_cap_is_413_in_the_api_error_shape(deployment, token):
    response = browser_with_fake_csrf_cookie().post(
        "/api/v1/deployments/tumour/predictions", b"{}", content_type="application/json",
        CONTENT_LENGTH=str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1), **{"wsgi.input": Unreadable()}, **bearer(token),
    )

    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank", "title": "Request Entity Too Large", "status": 413,
        "detail": "The request body is 33554433 bytes; the limit is 33554432 bytes (32.0 MB).", "errors": [],
    }
    assert not PredictionBatch.objects.exists()


def test_a_chunked_upload_over_its_cap_is_413_and_stores_nothing(deployment, token, settings):
    settings.MAX_UPLOAD_BYTES = 10_000
    before = blob_files()
    body = b"id,timestamp\n" + b"r,2025-03-01\n" * 2_000

    response = Client().post("/api/v1/deployments/tumour/predictions/upload", body, content_type="text/csv",
                             **chunked(body), **bearer(token))

    assert response.status_code == 413
    assert response.json()["detail"] == "The request body is larger than the limit of 10000 bytes (9.8 KB)."
    assert not PredictionBatch.objects.exists()
    assert blob_files() == before


def test_a_chunked_upload_within_its_cap_is_read_and_stored(deployment, token):
    body = _predictions_csv(20)

    response = Client().post("/api/v1/deployments/tumour/predictions/upload", body, content_type="text/csv",
                             **chunked(body), **bearer(token))

    assert response.status_code == 201, response.content
    assert response.json()["created"] == 20


@pytest.mark.parametrize(
    ("name", "setting"),
    [
        ("api:predictions_upload", "MAX_UPLOAD_BYTES"),
        ("api:labels_upload", "MAX_UPLOAD_BYTES"),
        ("api:dataset_upload", "MAX_UPLOAD_BYTES"),
        ("api:version_upload", "MAX_MODEL_UPLOAD_BYTES"),
        ("dataset-new", "MAX_UPLOAD_BYTES"),
        ("version-new", "MAX_MODEL_UPLOAD_BYTES"),
    ],
)
def test_each_upload_route_has_its_own_cap(name, setting):
    assert UPLOAD_ROUTES[resolve(reverse(name, kwargs={"slug": "tumour"})).route] == setting


def test_a_file_upload_over_the_small_default_but_within_its_own_cap_goes_through(deployment, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = _predictions_csv(20)
    assert len(body) > 1_000

    response = Client().post("/api/v1/deployments/tumour/predictions/upload", body, content_type="text/csv", **bearer(token))

    assert response.status_code == 201, response.content


def test_a_json_batch_of_10000_rows_of_64_named_features_fits_the_default_cap(db):
    rng = np.random.default_rng(0)
    names = [f"feature_{j}" for j in range(64)]
    rows = [{"id": f"req-{i:08d}", "timestamp": "2025-03-01T12:00:00.123456+00:00",
             "features": dict(zip(names, map(float, x))), "predicted_label": "class_a"}
            for i, x in enumerate(rng.normal(size=(10_000, 64)))]

    assert len(json.dumps({"predictions": rows})) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def test_an_oversized_model_upload_through_the_form_is_413_in_words(deployment, operator, settings, upload_temp_dir):
    settings.MAX_MODEL_UPLOAD_BYTES = 50_000
    body, content_type = multipart({"file": b"\x08" * 100_000, "notes": "big"})
    versions = deployment.versions.count()

    response = logged_in(operator).post(reverse("version-new", args=["tumour"]), body, content_type=content_type)

    assert response.status_code == 413
    assert "the limit is 50000 bytes (48.8 KB)" in response.content.decode()
    assert deployment.versions.count() == versions
    assert list(upload_temp_dir.iterdir()) == []


# ---------------------------------------------------------------- Parquet and CSV bombs


def _parquet(columns: dict) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer, compression="zstd")
    return buffer.getvalue()


def _repeated(value, n: int) -> pa.DictionaryArray:
    """One value n times, dictionary-encoded: Parquet stores it as one dictionary entry and a run length."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))


@cache
def labels_rows_bomb() -> bytes:
    """10 million labels in a file of kilobytes."""
    return _parquet({"id": _repeated("r", 10_000_000), "label": _repeated("1", 10_000_000)})


@cache
def predictions_text_bomb() -> bytes:
    """A million rows (under the row limit) whose id is one 2,000-character string: 2 GB once decoded."""
    n = 1_000_000
    columns = {"id": _repeated("x" * 2_000, n), "timestamp": _repeated("2025-03-01T00:00:00Z", n),
               "predicted_label": _repeated("0", n)}
    return _parquet(columns | {name: _repeated(1.5, n) for name in FEATURES})


def test_a_parquet_file_claiming_ten_million_rows_is_413_from_its_footer(deployment, token):
    data = labels_rows_bomb()
    assert len(data) < 100_000
    before = peak_rss_mb()

    response = Client().post("/api/v1/deployments/tumour/labels/upload", data,
                             content_type="application/vnd.apache.parquet", **bearer(token))

    assert response.status_code == 413
    assert response.json()["detail"] == "The file has 10,000,000 rows; the limit is 2,000,000."
    assert peak_rss_mb() - before < 200  # decoded, the ids alone would be 80 MB of offsets and more
    assert not Prediction.objects.filter(label_index__isnull=False).exists()


def test_a_parquet_dictionary_bomb_is_413_before_its_text_is_expanded(deployment, token):
    data = predictions_text_bomb()
    assert len(data) < 1_000_000
    before, blobs = peak_rss_mb(), blob_files()

    response = Client().post("/api/v1/deployments/tumour/predictions/upload", data,
                             content_type="application/vnd.apache.parquet", **bearer(token))

    assert response.status_code == 413
    detail = response.json()["detail"]
    assert detail.startswith("The file's columns take ") and detail.endswith(" bytes once decoded; the limit is 1,073,741,824.")
    assert peak_rss_mb() - before < 500  # expanded, the ids are 2 GB
    assert not PredictionBatch.objects.exists()
    assert blob_files() == blobs


def test_a_parquet_file_over_the_uncompressed_limit_is_413_before_decoding(deployment, token, settings):
    settings.MAX_UPLOAD_UNCOMPRESSED_BYTES = 50_000
    rng = np.random.default_rng(0)
    table = {"id": [f"r-{i}" for i in range(5_000)], "label": rng.integers(0, 2, 5_000).astype(str)}

    response = Client().post("/api/v1/deployments/tumour/labels/upload", _parquet(table),
                             content_type="application/vnd.apache.parquet", **bearer(token))

    assert response.status_code == 413
    assert "bytes uncompressed; the limit is 50,000." in response.json()["detail"]


def test_a_parquet_file_with_nested_columns_is_422_saying_what_is_read(deployment, token):
    data = _parquet({"id": pa.array([["a", "b"]]), "label": pa.array(["1"])})

    response = Client().post("/api/v1/deployments/tumour/labels/upload", data,
                             content_type="application/vnd.apache.parquet", **bearer(token))

    assert response.status_code == 422
    assert response.json()["detail"] == "The column 'id' holds list<element: string>; only numbers, text and dates are read."


def test_only_the_columns_needed_are_read_from_a_parquet_file(deployment, token):
    services.predictions_ingest(deployment=deployment, rows=[
        {"id": f"r-{i}", "timestamp": "2025-03-01T00:00:00Z", "features": [1.0] * 30, "predicted_label": "0"}
        for i in range(3)
    ])
    # A notes column that would take 3 GB decoded: never decoded, because a labels file needs id and label only.
    notes = pa.DictionaryArray.from_arrays(pa.array([0, 0, 0], type=pa.int32()), pa.array(["n" * 1_000_000_000]))
    data = _parquet({"id": ["r-0", "r-1", "r-2"], "label": ["1", "0", "1"], "notes": notes})

    response = Client().post("/api/v1/deployments/tumour/labels/upload", data,
                             content_type="application/vnd.apache.parquet", **bearer(token))

    assert response.status_code == 200, response.content
    assert response.json()["updated"] == 3


def test_a_csv_of_more_rows_than_the_limit_is_413_without_parsing_it_whole(deployment, token, settings, monkeypatch):
    settings.MAX_UPLOAD_ROWS = 1_000
    monkeypatch.setattr(pacsv, "read_csv", lambda *a, **k: pytest.fail("the whole file was parsed"))
    data = b"id,label\n" + b"".join(b"r-%d,1\n" % i for i in range(50_000))

    response = Client().post("/api/v1/deployments/tumour/labels/upload", data, content_type="text/csv", **bearer(token))

    assert response.status_code == 413
    assert response.json()["detail"] == "The file has more than 1,000 rows; the limit is 1,000."


def test_a_csv_whose_quoted_cells_hold_newlines_is_counted_by_rows_not_lines(deployment, token, settings):
    settings.MAX_UPLOAD_ROWS = 5
    services.predictions_ingest(deployment=deployment, rows=[
        {"id": f"r-{i}", "timestamp": "2025-03-01T00:00:00Z", "features": [1.0] * 30, "predicted_label": "0"}
        for i in range(5)
    ])
    data = b"id,label,note\n" + b"".join(b'r-%d,1,"one\ntwo\nthree"\n' % i for i in range(5))

    response = Client().post("/api/v1/deployments/tumour/labels/upload", data, content_type="text/csv", **bearer(token))

    assert response.status_code == 200, response.content
    assert response.json()["updated"] == 5


# ---------------------------------------------------------------- datasets: CSV and Parquet, one reader


def _dataset_table(n: int = 60, *, labels: bool = True) -> dict:
    _, _, X_test, y_test = breast_cancer_split()
    columns = {name: X_test[:n, j].astype(np.float64) for j, name in enumerate(FEATURES)}
    return columns | ({"label": y_test[:n].astype(str)} if labels else {})


def test_an_operator_uploads_a_parquet_dataset_through_the_api(deployment, operator):
    data = _parquet(_dataset_table(60))

    response = logged_in(operator).post("/api/v1/deployments/tumour/datasets",
                                        {"file": SimpleUploadedFile("holdout.parquet", data), "kind": "evaluation"})

    assert response.status_code == 201, response.content
    assert (response.json()["name"], response.json()["n_rows"], response.json()["has_labels"]) == ("holdout.parquet", 60, True)
    deployment.refresh_from_db()
    X, y = services.dataset_load(deployment.evaluation_dataset)
    assert X[0] == pytest.approx(breast_cancer_split()[2][0], rel=1e-6)
    assert list(y[:3]) == [str(v) for v in breast_cancer_split()[3][:3]]


def test_an_operator_uploads_a_parquet_dataset_through_the_dashboard(deployment, operator):
    data = _parquet(_dataset_table(40, labels=False))

    response = logged_in(operator).post(reverse("dataset-new", args=["tumour"]),
                                        {"file": SimpleUploadedFile("fresh.parquet", data), "kind": "reference"})

    assert response.status_code == 302
    deployment.refresh_from_db()
    assert (deployment.reference_dataset.name, deployment.reference_dataset.n_rows) == ("fresh.parquet", 40)
    assert AuditEvent.objects.filter(action="dataset.register", object_id=str(deployment.reference_dataset.pk)).exists()


def test_the_dashboard_names_the_bad_cell_of_a_dataset_csv_and_stores_nothing(deployment, operator):
    lines = [",".join(FEATURES)] + [",".join(["1.0"] * 30)] * 3
    lines[2] = ",".join(["1.0"] * 7 + ["abc"] + ["1.0"] * 22)
    before, events, blobs = Dataset.objects.count(), AuditEvent.objects.count(), blob_files()

    response = logged_in(operator).post(reverse("dataset-new", args=["tumour"]), {
        "file": SimpleUploadedFile("ref.csv", "\n".join(lines).encode()), "kind": "reference"})

    assert response.status_code == 422
    assert "Line 3, column &#x27;f7&#x27;: &#x27;abc&#x27; is not a number." in response.content.decode()
    assert (Dataset.objects.count(), AuditEvent.objects.count(), blob_files()) == (before, events, blobs)


def test_a_parquet_dataset_with_true_false_features_is_422(deployment, operator):
    table = _dataset_table(10, labels=False) | {"f3": [True, False] * 5}
    before = Dataset.objects.count()

    response = logged_in(operator).post("/api/v1/deployments/tumour/datasets",
                                        {"file": SimpleUploadedFile("ref.parquet", _parquet(table)), "kind": "reference"})

    assert response.status_code == 422
    assert response.json()["detail"] == "The column 'f3' holds true/false; a feature holds numbers."
    assert Dataset.objects.count() == before


def test_a_parquet_dataset_bomb_is_413_and_stores_nothing(deployment, operator, settings):
    settings.MAX_UPLOAD_ROWS = 100_000
    data = _parquet({name: _repeated(1.5, 1_000_000) for name in FEATURES})
    before, blobs = Dataset.objects.count(), blob_files()

    response = logged_in(operator).post("/api/v1/deployments/tumour/datasets",
                                        {"file": SimpleUploadedFile("ref.parquet", data), "kind": "reference"})

    assert response.status_code == 413
    assert response.json()["detail"] == "The file has 1,000,000 rows; the limit is 100,000."
    assert (Dataset.objects.count(), blob_files()) == (before, blobs)


def test_a_dataset_csv_of_more_rows_than_the_limit_is_413(deployment, operator, settings):
    settings.MAX_UPLOAD_ROWS = 100
    data = (",".join(FEATURES) + "\n" + (",".join(["1"] * 30) + "\n") * 5_000).encode()
    before = Dataset.objects.count()

    response = logged_in(operator).post("/api/v1/deployments/tumour/datasets",
                                        {"file": SimpleUploadedFile("ref.csv", data), "kind": "reference"})

    assert response.status_code == 413
    assert response.json()["detail"] == "The file has more than 100 rows; the limit is 100."
    assert Dataset.objects.count() == before


def test_a_201_character_dataset_name_is_422_and_stores_nothing(deployment, operator):
    data = _parquet(_dataset_table(10, labels=False))
    before, events, blobs = Dataset.objects.count(), AuditEvent.objects.count(), blob_files()

    response = logged_in(operator).post("/api/v1/deployments/tumour/datasets", {
        "file": SimpleUploadedFile("ref.parquet", data), "kind": "reference", "name": "n" * 201})

    assert response.status_code == 422
    assert response.json()["detail"] == "A dataset's name is at most 200 characters; this one has 201."
    assert response.json()["errors"] == [{"row": None, "line": None, "field": "name", "message": "at most 200 characters"}]
    assert (Dataset.objects.count(), AuditEvent.objects.count(), blob_files()) == (before, events, blobs)


# ---------------------------------------------------------------- deep JSON


@pytest.mark.parametrize("inner", [b"1", b"NaN"], ids=["plain", "with-nan"])
def test_json_nested_100000_deep_is_400_saying_so_and_stores_nothing(deployment, token, inner):
    body = b'{"predictions": ' + b"[" * 100_000 + inner + b"]" * 100_000 + b"}"

    response = Client().post("/api/v1/deployments/tumour/predictions", body, content_type="application/json", **bearer(token))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body is not valid JSON: depth limit exceeded")
    assert not PredictionBatch.objects.exists()


@pytest.mark.parametrize("inner", [b"1", b"NaN"], ids=["plain", "with-nan"])
def test_deep_json_to_a_schema_endpoint_is_400_and_creates_nothing(team, operator, inner):
    body = b"[" * 100_000 + inner + b"]" * 100_000

    response = logged_in(operator).post("/api/v1/deployments", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"] == "Cannot parse request body"
    assert not team.deployments.exists()


# ---------------------------------------------------------------- slugs and feature names with markup


@pytest.mark.parametrize("slug", ["a b", "<script>", "a/b", "ü-umlaut", "x" * 101, "'; DROP TABLE x; --"])
def test_a_slug_that_urls_cannot_hold_is_422_and_creates_nothing(team, operator, slug):
    events = AuditEvent.objects.count()

    response = logged_in(operator).post("/api/v1/deployments", json.dumps(
        {"name": "Churn", "slug": slug, "team": team.slug, "feature_names": ["a"], "class_labels": ["x", "y"]}),
        content_type="application/json")

    assert response.status_code == 422
    assert response.json()["detail"] in ("The deployment is not valid.", "The request is not valid.")
    assert [e["field"] for e in response.json()["errors"]] == ["slug"]
    assert not Deployment.objects.filter(team=team).exists()
    assert AuditEvent.objects.count() == events


def test_a_name_with_markup_makes_a_url_safe_slug_and_renders_escaped(team, operator):
    client = logged_in(operator)
    name = '<script>alert("x")</script>'

    created = client.post("/api/v1/deployments", json.dumps(
        {"name": name, "team": team.slug, "feature_names": ["a"], "class_labels": ["x", "y"]}),
        content_type="application/json")
    overview = client.get(reverse("overview"))

    assert created.status_code == 201, created.content
    assert created.json()["slug"] == "scriptalertxscript"
    assert overview.status_code == 200
    assert name not in overview.content.decode()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in overview.content.decode()


MARKUP_FEATURES = ['<script>alert("f")</script>', "<img src=x onerror=alert(1)>", "plain"]


@pytest.fixture
def markup_deployment(team, operator):
    deployment = services.deployment_create(
        team=team, name="Markup", slug="markup", feature_names=MARKUP_FEATURES, class_labels=CLASSES, by=operator
    )
    X_train, y_train, _, _ = breast_cancer_split()
    estimator = LogisticRegression(max_iter=1000).fit(X_train[:, :3], y_train)
    onnx = estimator_to_onnx(estimator, feature_names=MARKUP_FEATURES, class_labels=CLASSES)
    services.version_register(deployment=deployment, data=onnx, by=operator)
    services.dataset_register(deployment=deployment, kind="reference", name="train", X=X_train[:, :3], y=None, by=operator)
    deployment.refresh_from_db()
    return deployment


def test_feature_names_with_markup_render_escaped_on_the_drift_report(markup_deployment, viewer):
    _, _, X_test, _ = breast_cancer_split()
    now = timezone.now()
    ingest_traffic(markup_deployment, X_test[:, :3], predicted=np.zeros(len(X_test), dtype=int),
                   start=now - timedelta(hours=3), spacing=timedelta(seconds=10))
    report = check_drift(deployment=markup_deployment, window_start=now - timedelta(hours=4), window_end=now)

    page = logged_in(viewer).get(reverse("drift-report", args=["markup", report.pk])).content.decode()

    for name in MARKUP_FEATURES[:2]:
        assert name not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "\\u003cscript\\u003e" in page  # in the chart JSON, which is embedded raw
    assert "<script>alert(" not in page


def test_a_dataset_error_naming_a_feature_with_markup_renders_escaped(markup_deployment, operator):
    response = logged_in(operator).post(reverse("dataset-new", args=["markup"]), {
        "file": SimpleUploadedFile("ref.csv", b"plain\n1\n"), "kind": "reference"})

    assert response.status_code == 422
    page = response.content.decode()
    assert "The header lacks feature column(s): &lt;script&gt;alert(&quot;f&quot;)&lt;/script&gt;" in page
    assert '<script>alert("f")' not in page


# ---------------------------------------------------------------- Idempotency-Key reused with another body


def _predictions_csv(n: int, *, start: int = 0) -> bytes:
    lines = [",".join(["id", "timestamp", "predicted_label", *FEATURES])]
    lines += [",".join([f"req-{start + i}", "2025-03-01T12:00:00Z", "0", *["1.5"] * 30]) for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def test_an_upload_reusing_an_idempotency_key_with_another_file_is_422_and_stores_nothing(deployment, token):
    key = {"HTTP_IDEMPOTENCY_KEY": "upload-1"}
    first = Client().post("/api/v1/deployments/tumour/predictions/upload", _predictions_csv(5), content_type="text/csv",
                          **bearer(token), **key)
    blobs = blob_files()

    other = Client().post("/api/v1/deployments/tumour/predictions/upload", _predictions_csv(5, start=5),
                          content_type="text/csv", **bearer(token), **key)
    same = Client().post("/api/v1/deployments/tumour/predictions/upload", _predictions_csv(5), content_type="text/csv",
                         **bearer(token), **key)

    assert (first.status_code, other.status_code, same.status_code) == (201, 422, 201)
    assert other.json()["detail"] == (
        f"Idempotency-Key reused with a different body: batch {first.json()['batch_id']} was stored under this key "
        "with other content. Send new content with a new key; resend the same content to retry."
    )
    assert same.json() == first.json() | {"replayed": True}
    assert PredictionBatch.objects.count() == 1 and deployment.predictions.count() == 5
    assert blob_files() == blobs


def test_a_json_batch_reusing_the_key_of_an_upload_is_422(deployment, token):
    key = {"HTTP_IDEMPOTENCY_KEY": "shared-key"}
    Client().post("/api/v1/deployments/tumour/predictions/upload", _predictions_csv(2), content_type="text/csv",
                  **bearer(token), **key)
    rows = [{"id": "req-9", "timestamp": "2025-03-01T12:00:00Z", "features": [1.5] * 30, "predicted_label": "0"}]

    response = Client().post("/api/v1/deployments/tumour/predictions", json.dumps({"predictions": rows}),
                             content_type="application/json", **bearer(token), **key)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("Idempotency-Key reused with a different body")
    assert PredictionBatch.objects.count() == 1


# ---------------------------------------------------------------- through gunicorn, as deployed


@pytest.fixture(scope="module")
def gunicorn_url(django_db_setup, tmp_path_factory):
    """The app under a real gunicorn (which ends wsgi.input of a chunked body), on the test database, with
    MAX_UPLOAD_BYTES at 10,000. Started once for the module; the tests using it are transactional, so it sees
    their rows."""
    from django.db import connection

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**connection.settings_dict),
        "MEDIA_ROOT": str(tmp_path_factory.getbasetemp() / "media"), "MAX_UPLOAD_BYTES": "10000", "DEBUG": "false",
    })
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "dashboard.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--preload"],
            cwd=Path(__file__).resolve().parents[2], env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_it_answers(f"127.0.0.1:{port}", log_path)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_until_it_answers(host: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection(host, timeout=5)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within 60 s; see {log_path}")


def _post(host: str, path: str, body, headers: dict) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers, encode_chunked=not isinstance(body, bytes))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_gunicorn_refuses_a_chunked_upload_past_its_cap_and_stores_nothing(gunicorn_url, token):
    chunks = (b"id,timestamp,predicted_label\n" + b"r,2025-03-01,0\n" * 100 for _ in range(20))  # 30 KB

    status, body = _post(gunicorn_url, "/api/v1/deployments/tumour/predictions/upload", chunks,
                         {"Content-Type": "text/csv", "Transfer-Encoding": "chunked", **_auth(token)})

    assert status == 413
    assert json.loads(body)["detail"] == "The request body is larger than the limit of 10000 bytes (9.8 KB)."
    assert not PredictionBatch.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_gunicorn_reads_a_chunked_upload_within_its_cap(gunicorn_url, token):
    data = _predictions_csv(10)
    chunks = (data[i : i + 1000] for i in range(0, len(data), 1000))

    status, body = _post(gunicorn_url, "/api/v1/deployments/tumour/predictions/upload", chunks,
                         {"Content-Type": "text/csv", "Transfer-Encoding": "chunked", **_auth(token)})

    assert status == 201, body
    assert json.loads(body)["created"] == 10


@pytest.mark.django_db(transaction=True)
def test_gunicorn_answers_a_login_post_declaring_gigabytes_at_once(gunicorn_url):
    connection = http.client.HTTPConnection(gunicorn_url, timeout=10)
    try:
        connection.putrequest("POST", "/login/")
        for name, value in {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(5 * 1024**3),
                            "Cookie": f"csrftoken={FAKE_CSRF}"}.items():
            connection.putheader(name, value)
        connection.endheaders(b"--x\r\n")  # and nothing more of the 5 GB
        response = connection.getresponse()
        status, page = response.status, response.read().decode()
    finally:
        connection.close()

    assert status == 413
    assert "The request body is 5368709120 bytes; the limit is 33554432 bytes (32.0 MB)." in page


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
