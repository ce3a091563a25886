"""Helpers for the API tests: clients, bearer headers, JSON posts, upload files."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.conftest import FEATURES, breast_cancer_split, trained_model
from tests.workers.conftest import mlp_deployment  # noqa: F401  (a fixture: a digits MLP, which compresses)


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
