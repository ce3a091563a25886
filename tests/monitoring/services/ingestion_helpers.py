"""Helpers shared by the ingestion tests: prediction rows, tables and files, the window read-back."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from monitoring import indexing, selectors, services
from tests.conftest import FEATURES, breast_cancer_split

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def prediction_rows(n: int, *, start: int = 0, as_list: bool = False) -> list[dict]:
    _, _, X_test, _ = breast_cancer_split()
    return [
        {
            "id": f"req-{start + i}",
            "timestamp": (T0 + timedelta(seconds=start + i)).isoformat(),
            "features": list(map(float, X_test[start + i])) if as_list else dict(zip(FEATURES, map(float, X_test[start + i]))),
            "predicted_label": "1" if (start + i) % 3 else "0",
            "probabilities": [0.2, 0.8],
        }
        for i in range(n)
    ]


def window(deployment, **kwargs):
    return selectors.production_window(deployment=deployment, start=T0 - timedelta(days=1), end=T0 + timedelta(days=1), **kwargs)


def index(deployment) -> indexing.IndexOutcome:
    """What the worker does moments after a large batch is accepted (workers.tasks.index_batches_task)."""
    return services.batches_index(deployment_id=deployment.pk)


def _missing_feature(row: dict) -> None:
    del row["features"]["f7"]


def _nan_feature(row: dict) -> None:
    row["features"]["f3"] = math.nan


def _text_feature(row: dict) -> None:
    row["features"]["f2"] = "1.5"


def _bool_feature(row: dict) -> None:
    row["features"]["f2"] = True


def _short_list(row: dict) -> None:
    row["features"] = list(row["features"].values())[:29]


def _unknown_label(row: dict) -> None:
    row["predicted_label"] = "2"


def _bad_timestamp(row: dict) -> None:
    row["timestamp"] = "yesterday"


def _duplicate_id(row: dict) -> None:
    row["id"] = "req-1"


def _bad_probabilities(row: dict) -> None:
    row["probabilities"] = [0.5, 1.5]


def _huge_feature(row: dict) -> None:
    row["features"]["f0"] = 1e300


def _table(n: int, *, start: int = 0) -> pa.Table:
    _, _, X_test, _ = breast_cancer_split()
    columns = {
        "id": [f"file-{start + i}" for i in range(n)],
        "timestamp": [(T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S") for i in range(n)],
        "predicted_label": ["1"] * n,
    }
    columns |= {name: X_test[start : start + n, j] for j, name in enumerate(FEATURES)}
    return pa.table(columns)


def _csv(table: pa.Table) -> bytes:
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    return buffer.getvalue()


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _media_files(settings) -> set[str]:
    return {path.name for path in (settings.MEDIA_ROOT / "blobs").glob("*/*/*")}
