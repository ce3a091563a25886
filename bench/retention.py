"""The retention purge: rows/s deleting a deployment's expired predictions (default 1,000,000 rows in 10,000-row
batches, their index rows and batch rows), and the longest single statement it ran, which bounds how long any
ingest or label write on the same rows can wait behind it.

Baseline, measured in the same run on an identical deployment: one transaction of two plain DELETEs (the index
rows by deployment, then the batches), the fastest way to delete them and the one long transaction the purge
avoids. The purge pays for its bounded transactions in throughput; the ratio says how much.

Runs on its own database (BENCH_RETENTION_DATABASE_URL, default wk_bench_retention, created and migrated if
missing): it writes an audit event.

    .venv/bin/python bench/retention.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["DATABASE_URL"] = os.environ.get("BENCH_RETENTION_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wk_bench_retention")
sys.path.insert(0, str(ROOT))
from docker.services import ensure_database

ensure_database(os.environ["DATABASE_URL"])
from _common import T0, drop_deployment, make_deployment, stored_rows, synthetic_columns
from django.core.management import call_command
from django.db import connection

from monitoring import services
from monitoring.services import ingestion

call_command("migrate", verbosity=0)

BATCH = 10_000  # MAX_PREDICTION_BATCH: the largest JSON batch, stored and indexed in its request
N_FEATURES = 10


def fill(slug: str, n: int):
    deployment = make_deployment(slug, n_features=N_FEATURES, classes=["0", "1"])
    for start in range(0, n, BATCH):
        columns = synthetic_columns(min(BATCH, n - start), n_features=N_FEATURES, n_classes=2, start=start)
        ingestion._batch_store(deployment=deployment, columns=columns, key=f"b-{start}", fingerprint=f"b-{start}", source="api")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE monitoring_prediction; ANALYZE monitoring_predictionbatch")
    return deployment


class LongestStatement:
    def __init__(self) -> None:
        self.longest, self.statements = 0.0, 0

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.longest = max(self.longest, time.perf_counter() - start)
            self.statements += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    n = parser.parse_args().rows

    baseline = fill("bench-retention-delete", n)
    start = time.perf_counter()
    with connection.cursor() as cursor:  # autocommit off for the two: one transaction, as a naive purge would be
        cursor.execute("BEGIN")
        cursor.execute("DELETE FROM monitoring_prediction WHERE deployment_id = %s", [baseline.pk])
        cursor.execute("DELETE FROM monitoring_predictionbatch WHERE deployment_id = %s", [baseline.pk])
        cursor.execute("COMMIT")
    delete_s = time.perf_counter() - start
    drop_deployment("bench-retention-delete")

    # A slug of its own each run: the purge audits itself, and audited deployments are never deleted.
    deployment = fill(f"bench-retention-purge-{int(time.time())}", n)
    assert stored_rows(deployment) == (n, n, n)
    watch = LongestStatement()
    start = time.perf_counter()
    with connection.execute_wrapper(watch):
        outcome = services.deployment_purge(deployment=deployment, now=T0 + timedelta(days=365))
    purge_s = time.perf_counter() - start
    assert outcome.finished and outcome.rows == n, outcome
    assert stored_rows(deployment) == (0, 0, 0)

    print(f"rows: {n:,} in {n // BATCH} batches of {BATCH:,}")
    print(f"single DELETE transaction (baseline): {delete_s:.2f} s, {n / delete_s:,.0f} rows/s, "
          f"one transaction holding every row lock for {delete_s:.2f} s")
    print(f"retention purge: {purge_s:.2f} s, {n / purge_s:,.0f} rows/s, {watch.statements} statements, "
          f"longest {watch.longest * 1000:.0f} ms")
    print(f"purge throughput vs baseline: {delete_s / purge_s:.2f}x; longest lock hold: {watch.longest / delete_s:.3f}x the baseline's")


if __name__ == "__main__":
    main()
