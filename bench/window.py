"""Seconds to load a production window (1,000,000 rows × 20 features) from storage into numpy: stored as
1,000-row batches (in Postgres), and as one 1M-row upload (its columns in the media store).

Baseline, measured in the same run: the previous layout, one row per prediction with its features
as JSON (jsonb), read the way the old selector read it. It is slow, so it is measured on fewer rows
and compared per row.

    .venv/bin/python bench/window.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from datetime import timedelta

import numpy as np
from _common import T0, drop_deployment, make_deployment, synthetic_columns
from django.db import connection

from monitoring import selectors
from monitoring.services import ingestion

BATCH = 1_000  # the HTTP bench's batch size: the worst case for a window (most blocks per row)


def fill(deployment, n: int) -> None:
    for start in range(0, n, BATCH):
        columns = synthetic_columns(min(BATCH, n - start), n_features=deployment.n_features, n_classes=2, start=start)
        ingestion._batch_store(deployment=deployment, columns=columns, key=f"bench-{start}", fingerprint=f"bench-{start}", source="api")


def best_window_seconds(deployment, n: int, *, labelled_only: bool) -> float:
    best = float("inf")
    for _ in range(3):  # best of three: the first read also warms Postgres' buffer cache
        start = time.perf_counter()
        window = selectors.production_window(
            deployment=deployment, start=T0, end=T0 + timedelta(days=30), labelled_only=labelled_only
        )
        best = min(best, time.perf_counter() - start)
    assert window.X.shape == (n, deployment.n_features) and len(window.request_ids) == n
    return best


def one_upload_seconds(n: int, n_features: int) -> float:
    """The same window stored as one batch, as a 1M-row file upload is: its columns in the media store."""
    deployment = make_deployment("bench-window-upload", n_features=n_features, classes=["0", "1"])
    try:
        columns = synthetic_columns(n, n_features=n_features, n_classes=2, start=0)
        ingestion._batch_store(deployment=deployment, columns=columns, key="bench-upload", fingerprint="bench-upload", source="upload")
        return best_window_seconds(deployment, n, labelled_only=False)
    finally:
        drop_deployment("bench-window-upload")


def label_all(deployment, n: int) -> None:
    ids = [f"r{i}" for i in range(n)]
    codes = (np.arange(n) % 2).astype(np.int16)
    ingestion._labels_store(deployment=deployment, ids=ids, rows=list(range(n)), codes=codes, received=n)


def old_layout_seconds(n: int, n_features: int) -> float:
    """Load n rows from a table shaped like the old Prediction (features jsonb), as the old selector did."""
    rng = np.random.default_rng(0)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_json_rows (deployment_id bigint, request_id varchar(128), timestamp timestamptz, "
            "features jsonb, predicted_label varchar(64), label varchar(64))"
        )
        buffer = io.StringIO()
        for i in range(n):
            features = "[" + ",".join(f"{v:.6f}" for v in rng.normal(size=n_features)) + "]"
            buffer.write(f"1\tr{i}\t2026-01-01 00:00:00+00\t{features}\t0\t1\n")
        buffer.seek(0)
        cursor.copy_expert("COPY bench_json_rows FROM STDIN", buffer)
        cursor.execute("CREATE INDEX ON bench_json_rows (deployment_id, timestamp)")
        cursor.execute("ANALYZE bench_json_rows")
        start = time.perf_counter()
        cursor.execute(
            "SELECT features, predicted_label, label, timestamp, request_id FROM bench_json_rows "
            "WHERE deployment_id = 1 ORDER BY timestamp"
        )
        values = cursor.fetchall()
        # Django's JSONField decodes each value with json.loads; the old selector then built the array.
        X = np.array([json.loads(v[0]) for v in values], dtype=np.float64).reshape(-1, n_features)
        elapsed = time.perf_counter() - start
        cursor.execute("DROP TABLE bench_json_rows")
    assert X.shape == (n, n_features)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 rows instead of 1,000,000")
    args = parser.parse_args()
    n = 50_000 if args.quick else 1_000_000
    n_old = 20_000 if args.quick else 200_000
    n_features = 20
    deployment = make_deployment("bench-window", n_features=n_features, classes=["0", "1"])
    try:
        started = time.perf_counter()
        fill(deployment, n)
        label_all(deployment, n)
        print(f"stored {n:,} rows in {n // BATCH:,} batches of {BATCH:,} and labelled them in {time.perf_counter() - started:.1f} s")
        timings = {labelled: best_window_seconds(deployment, n, labelled_only=labelled) for labelled in (False, True)}
        old = old_layout_seconds(n_old, n_features)
    finally:
        drop_deployment("bench-window")
    old_rate, new_rate = n_old / old, n / timings[False]
    print(f"window, all rows:      {n:,} × {n_features} in {timings[False]:.3f} s ({new_rate:,.0f} rows/s)")
    print(f"window, labelled only: {n:,} × {n_features} in {timings[True]:.3f} s ({n / timings[True]:,.0f} rows/s)")
    upload = one_upload_seconds(n, n_features)
    print(f"window, one {n:,}-row upload (media store, sha256-verified): {upload:.3f} s ({n / upload:,.0f} rows/s)")
    print(f"baseline (old JSON-per-row layout): {n_old:,} rows in {old:.3f} s ({old_rate:,.0f} rows/s); "
          f"{n:,} rows would take ~{n / old_rate:.1f} s")
    print(f"ratio: columnar is {new_rate / old_rate:.1f}x the baseline's rows/s (target: 1M rows in <= 1 s)")


if __name__ == "__main__":
    main()
