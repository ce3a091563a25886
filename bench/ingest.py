"""Rows per second accepted through the HTTP API (gunicorn, real Postgres, 4 concurrent clients,
1,000-row batches × 20 features) and through bulk file upload (Parquet and CSV, sent as the request
body; Parquet also as a multipart form). A real Celery worker builds the per-row index meanwhile, as in
production, and each phase also reports the rate until its last row was indexed. Every row is
counted back from the database: nothing lost, nothing duplicated.

Baseline, measured in the same run: raw row-wise COPY into a table shaped like the old per-row
Prediction table (features as jsonb, unique (deployment, request_id)).

    .venv/bin/python bench/ingest.py [--quick] [--port 8404]
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from _common import ROOT, drop_deployment, make_deployment, stored_rows
from django.db import connection

from monitoring.models import ApiToken, PredictionBatch
from monitoring.services import access

CLIENTS = 4
BATCH = 1_000
N_FEATURES = 20


def json_bodies(n_batches: int, *, prefix: str) -> list[bytes]:
    rng = np.random.default_rng(0)
    bodies = []
    for b in range(n_batches):
        X = rng.normal(size=(BATCH, N_FEATURES)).round(6)
        rows = [
            {"id": f"{prefix}{b}-{i}", "timestamp": f"2026-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}Z",
             "features": X[i].tolist(), "predicted_label": str(i % 2)}
            for i in range(BATCH)
        ]
        bodies.append(orjson.dumps({"predictions": rows}))
    return bodies


def table(n: int, *, prefix: str) -> pa.Table:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    columns = {
        "id": pa.array([f"{prefix}{i}" for i in range(n)]),
        "timestamp": pa.array(np.datetime64("2026-01-01T00:00:00", "us") + np.arange(n).astype("timedelta64[ms]")),
        "predicted_label": pa.array(np.where(np.arange(n) % 2, "1", "0")),
    }
    columns |= {f"f{j}": X[:, j] for j in range(N_FEATURES)}
    return pa.table(columns)


def post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    connection_ = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection_.request("POST", path, body=body, headers=headers)
    response = connection_.getresponse()
    data = response.read()
    connection_.close()
    return response.status, data


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def start_worker() -> subprocess.Popen:
    """One worker process, as `make demo` runs it: the indexer competes with gunicorn and Postgres for the 2 cores."""
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/celery"), "--quiet", "-A", "dashboard", "worker", "--queues", "default",
         "--concurrency", "1", "--loglevel", "WARNING"],
        cwd=ROOT, env=os.environ.copy(),
    )


WORKER: subprocess.Popen | None = None


def wait_indexed(deployment, start: float, timeout: float = 600) -> float:
    """Seconds from start until no batch of the deployment is pending (nan while pending with no worker yet)."""
    pending = PredictionBatch.objects.filter(deployment=deployment, state=PredictionBatch.State.PENDING)
    if WORKER is None and pending.exists():
        return float("nan")
    deadline = time.perf_counter() + timeout
    while pending.exists():
        if time.perf_counter() > deadline or WORKER.poll() is not None:
            raise SystemExit("the worker did not index the batches in time")
        time.sleep(0.05)
    return time.perf_counter() - start


def drain(deployment) -> tuple[int, float]:
    """Start the worker on a backlog: (rows indexed, seconds from the worker being ready to the last batch indexed)."""
    global WORKER
    from dashboard.celery import app
    from workers.tasks import index_batches_task

    backlog = PredictionBatch.objects.filter(deployment=deployment, state=PredictionBatch.State.PENDING)
    rows = sum(backlog.values_list("n_rows", flat=True))
    # The indexer tasks queued by the requests would start it before it answers a ping: drop them, queue one.
    app.control.purge()
    WORKER = start_worker()
    while not app.control.ping(timeout=0.5):
        if WORKER.poll() is not None:
            raise SystemExit("the worker did not start")
    start = time.perf_counter()
    index_batches_task.delay(deployment.pk)
    return rows, wait_indexed(deployment, start)


def start_server(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "dashboard.wsgi", "-b", f"127.0.0.1:{port}", "-w", "4",
         "--timeout", "300", "--log-level", "warning"],
        cwd=ROOT, env=os.environ.copy(),
    )
    for _ in range(100):
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/api/v1/openapi.json")
            return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start")


def http_rate(port: int, deployment, token: str, bodies: list[bytes]) -> tuple[float, float]:
    """(rows/s accepted, rows/s accepted and indexed)."""
    slug = deployment.slug
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    failures: list[str] = []

    def client(share: list[bytes]) -> None:
        for body in share:
            status, data = post(port, f"/api/v1/deployments/{slug}/predictions", body,
                                headers | {"Idempotency-Key": uuid.uuid4().hex})
            if status not in (201, 202):  # stored; 202 while a large batch is indexed
                failures.append(f"{status} {data[:200]!r}")

    # Warm-up: every gunicorn worker builds the API and opens its database connection on its first request,
    # about a second each; concurrent clients make sure each worker has had one before the clock starts.
    warm = [threading.Thread(target=client, args=([bodies[i]],)) for i in range(CLIENTS)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    wait_indexed(deployment, time.perf_counter())
    threads = [threading.Thread(target=client, args=(bodies[CLIENTS + i :: CLIENTS],)) for i in range(CLIENTS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} batches failed, first: {failures[0]}")
    n = (len(bodies) - CLIENTS) * BATCH
    return n / elapsed, n / wait_indexed(deployment, start)


def upload_rate(port: int, deployment, token: str, name: str, data: bytes, n: int, *, form: bool) -> tuple[float, float]:
    """(rows/s accepted, rows/s accepted and indexed) of one file sent as the body, or as a multipart form."""
    slug = deployment.slug
    if form:
        body, content_type = multipart(name, data)
    else:
        body, content_type = data, "application/vnd.apache.parquet" if name.endswith(".parquet") else "text/csv"
    start = time.perf_counter()
    status, answer = post(port, f"/api/v1/deployments/{slug}/predictions/upload", body,
                          {"Authorization": f"Bearer {token}", "Content-Type": content_type})
    elapsed = time.perf_counter() - start
    if status not in (201, 202) or orjson.loads(answer)["created"] != n:
        raise SystemExit(f"upload failed: {status} {answer[:300]!r}")
    return n / elapsed, n / wait_indexed(deployment, start)


def copy_baseline(n: int) -> float:
    """Raw COPY of n rows into the old per-row shape (features jsonb, unique ids), rows/s."""
    rng = np.random.default_rng(2)
    buffer = io.StringIO()
    X = rng.normal(size=(n, N_FEATURES)).round(6)
    for i in range(n):
        buffer.write(f"1\tb{i}\t2026-01-01 00:00:00+00\t[{','.join(map(str, X[i]))}]\t0\n")
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_rows (id bigserial PRIMARY KEY, deployment_id bigint, request_id varchar(128), "
            "timestamp timestamptz, features jsonb, predicted_label varchar(64), UNIQUE (deployment_id, request_id))"
        )
        cursor.execute("CREATE INDEX ON bench_rows (deployment_id, timestamp)")
        start = time.perf_counter()
        cursor.copy_expert(
            "COPY bench_rows (deployment_id, request_id, timestamp, features, predicted_label) FROM STDIN", buffer
        )
        connection.commit() if not connection.get_autocommit() else None
        elapsed = time.perf_counter() - start
        cursor.execute("DROP TABLE bench_rows")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows over HTTP and 50,000 per upload")
    parser.add_argument("--port", type=int, default=8404)
    parser.add_argument("--http-only", action="store_true", help="skip the uploads")
    parser.add_argument("--repeat", type=int, default=3, help="uploads of each kind; the median is reported")
    parser.add_argument(
        "--indexer", choices=["concurrent", "after"], default="concurrent",
        help="concurrent: the worker indexes while clients send (one machine, as `make demo` runs it); "
        "after: clients send with no indexer running (a burst, or indexers on other machines), then the worker "
        "indexes the backlog alone",
    )
    args = parser.parse_args()
    n_batches = (20 if args.quick else 600) + CLIENTS  # 600: a few seconds of sending, so one slow second weighs less
    n_upload = 50_000 if args.quick else 1_000_000
    slug = "bench-ingest"
    deployment = make_deployment(slug, n_features=N_FEATURES, classes=["0", "1"])
    # Earlier runs' deletes leave dead index entries that every insert would step over; autovacuum may be off.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE monitoring_prediction, monitoring_predictionbatch")
    prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
    ApiToken.objects.create(deployment=deployment, name="bench", prefix=prefix, secret_sha256=access._hash_secret(secret))
    token = f"{access.TOKEN_PREFIX}_{prefix}_{secret}"
    bodies = json_bodies(n_batches, prefix="h")
    files: dict[str, list[tuple[str, bytes]]] = {}
    for label, name, prefix in [("Parquet body", "traffic.parquet", "p"), ("Parquet form", "traffic.parquet", "m"),
                                ("CSV body", "traffic.csv", "c")][: 0 if args.http_only else 3]:
        for k in range(args.repeat):  # fresh ids each time: a resent id would be rejected
            buffer = io.BytesIO()
            (pq.write_table if name.endswith(".parquet") else pacsv.write_csv)(table(n_upload, prefix=f"{prefix}{k}-"), buffer)
            files.setdefault(label, []).append((name, buffer.getvalue()))
    global WORKER
    server = start_server(args.port)
    if args.indexer == "concurrent":
        WORKER = start_worker()
    results = {}
    backlog = None
    try:
        results["HTTP JSON API"] = [http_rate(args.port, deployment, token, bodies)]
        for label, sent in files.items():
            results[f"upload, {label}"] = [
                upload_rate(args.port, deployment, token, name, data, n_upload, form="form" in label) for name, data in sent
            ]
        if WORKER is None:
            backlog = drain(deployment)
        rows, distinct, in_batches = stored_rows(deployment)
    finally:
        for process in (server, WORKER):
            if process is not None:
                process.terminate()
                process.wait()
        drop_deployment(slug)
    expected = n_batches * BATCH + sum(map(len, files.values())) * n_upload
    baseline = copy_baseline(n_upload // 2)
    print(f"HTTP: {CLIENTS} clients, {BATCH:,}-row batches × {N_FEATURES} features; uploads: {n_upload:,} rows each")
    print(f"uploads: the median of {args.repeat} of each kind, and their range")
    print(f"{'path':24s} {'accepted rows/s':>16s} {'x baseline':>11s} {'indexed rows/s':>15s}   accepted range")
    for label, runs in results.items():
        accepted, indexed = np.median([a for a, _ in runs]), np.median([i for _, i in runs])
        spread = f"{min(a for a, _ in runs):,.0f}–{max(a for a, _ in runs):,.0f}" if len(runs) > 1 else ""
        print(f"{label:24s} {accepted:16,.0f} {accepted / baseline:10.2f}x {indexed:15,.0f}   {spread}")
    if backlog is not None:
        print(f"indexer alone, on the backlog: {backlog[0]:,} rows in {backlog[1]:.2f} s = {backlog[0] / backlog[1]:,.0f} rows/s")
    print(f"counted back: {rows:,} index rows, {distinct:,} distinct ids, {in_batches:,} rows in batches; expected {expected:,}")
    print(f"baseline, raw row-wise COPY into the old per-row shape: {baseline:,.0f} rows/s")
    print("targets: HTTP >= 100,000 rows/s accepted, bulk >= 500,000 rows/s accepted")
    if not rows == distinct == in_batches == expected:
        print("FAILED: rows were lost or duplicated")
        sys.exit(1)


if __name__ == "__main__":
    main()
