"""The serving client (client/watchkeeper_client), measured against bare onnxruntime in the same run.

1. Overhead per `predict` with logging on vs bare `InferenceSession.run` on the same session and inputs, at
   batch 1 and 64 (targets: ≤ 5 µs, ≤ 5 %): with the sending deferred to between repeats (the caller's thread's
   own cost) and with the senders running concurrently (what a CPU-bound caller also feels of them).
2. One client process logging to the server (gunicorn, real Postgres, a real Celery worker as the indexer):
   predictions accepted per second from the first predict to the last batch acknowledged, as the client sends
   them (`Prefer: respond-async`: stored, ids left to the indexer, 202), and then how long until the indexer
   has every id in the label index; every row counted back from the database (none lost, none doubled).
   Baseline in the same run, interleaved: the same client with index_in_request=True (each batch's ids indexed
   in its request, 201: what every batch did before). Target ≥ 100k/s accepted, none lost.

Run against a database and Redis database of your own (the database is migrated here), e.g.
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_serving REDIS_URL=redis://127.0.0.1:6379/5 \
    .venv/bin/python bench/serving_client.py [--quick] [--rounds 2]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import watchkeeper_client
from _common import ROOT, stored_rows
from django.conf import settings
from django.core.management import call_command
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from watchkeeper_client.prediction_log import _Chunk

from monitoring import services, signing
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import Team

# A new deployment per run: its audit trail (protected, append-only) keeps it from being deleted after.
SLUG = f"bench-serving-client-{uuid.uuid4().hex[:6]}"
FEATURES = [f"f{i}" for i in range(30)]
SENDERS = 4  # one batch in flight per gunicorn worker (-w 4) while the next is encoded


def setup() -> tuple[str, np.ndarray]:
    """(token, X) for a deployment whose active v1 is a signed logistic regression on breast_cancer."""
    call_command("migrate", verbosity=0)
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    model = estimator_to_onnx(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y),
                              feature_names=FEATURES, class_labels=["0", "1"])
    team, _ = Team.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    deployment = services.deployment_create(team=team, name=SLUG, slug=SLUG, feature_names=FEATURES,
                                            class_labels=["0", "1"], by=None)
    services.version_register(deployment=deployment, data=model, by=None)
    _, token = services.token_create(deployment=deployment, name="bench", by=None)
    return token, X


def start_server(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "dashboard.wsgi", "-b", f"127.0.0.1:{port}", "-w", "4",
         "--worker-class", "gthread", "--threads", "4", "--timeout", "300", "--log-level", "warning"],
        cwd=ROOT, env=os.environ.copy(),
    )
    for _ in range(300):
        try:
            # Answered, not just connected: a gunicorn worker builds the API on its first request.
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/api/v1/signing-key")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start")


def start_indexer() -> subprocess.Popen:
    """A Celery worker on the default queue, as `docker/entrypoint.sh worker` runs it: the indexer."""
    worker = subprocess.Popen(
        [str(ROOT / ".venv/bin/celery"), "-A", "dashboard", "worker", "--queues", "default", "--concurrency", "2",
         "--hostname", f"bench-serving-client-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=os.environ.copy(),
    )
    from dashboard.celery import app

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit("the Celery worker exited at start")
        if app.control.ping(timeout=1.0):
            return worker
    worker.terminate()
    raise SystemExit("the Celery worker did not answer a ping within 120 s")


def log_and_count(model, rows: np.ndarray, n_rows: int, deployment) -> tuple[float, float, tuple[int, int, int]]:
    """(seconds until the client's last batch was acknowledged, seconds until every id was in the label index,
    (index rows, distinct ids, rows in batches) added), from the first predict."""
    wait_until_indexed(deployment)  # the earlier runs' batches: counted in neither run
    before = stored_rows(deployment)
    start = time.perf_counter()
    for _ in range(n_rows // len(rows)):
        model.predict(rows)
    assert model.flush(timeout=600), "the client did not send everything within 10 minutes"
    accepted = time.perf_counter() - start
    wait_until_indexed(deployment)
    indexed = time.perf_counter() - start
    added = tuple(now - then for now, then in zip(stored_rows(deployment), before))
    return accepted, indexed, added  # type: ignore[return-value]


def wait_until_indexed(deployment, timeout: float = 600) -> None:
    """Until no batch of the deployment is pending (a probe of the partial index batch_pending_idx, not a count
    of the index: that takes a second at a million rows)."""
    from monitoring.models import PredictionBatch

    pending = PredictionBatch.objects.filter(deployment=deployment, state=PredictionBatch.State.PENDING)
    deadline = time.monotonic() + timeout
    while pending.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def per_call_us(fn, X: np.ndarray, calls: int) -> tuple[float, float]:
    """(wall-clock µs, caller's-thread CPU µs) per call. The CPU time is the caller's thread's own work: on a
    shared machine it leaves out the time the thread waited for a core."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        fn(X)
    return (time.perf_counter() - wall) / calls * 1e6, (time.thread_time() - cpu) / calls * 1e6


def overhead(model, X: np.ndarray, batch: int, calls: int, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((bare wall, bare CPU), (client wall, client CPU)) µs per call: medians of interleaved repeats, so both see
    the same machine."""
    loaded = model._model  # the very session predict() runs
    session, feed_name, outputs = loaded.session, loaded.input_name, list(loaded.outputs)
    rows = np.ascontiguousarray(X[:batch])
    bare_run = lambda rows: session.run(outputs, {feed_name: rows})
    bare, client = [], []
    for _ in range(repeats):
        bare.append(per_call_us(bare_run, rows, calls))
        client.append(per_call_us(model.predict, rows, calls))
        model.flush(timeout=120)  # the sender's work between repeats, not inside the next one's clock
    median = lambda runs, k: statistics.median(run[k] for run in runs)
    return (median(bare, 0), median(bare, 1)), (median(client, 0), median(client, 1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--port", type=int, default=8406)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of baseline and client default")
    parser.add_argument("--rows", type=int, help="predictions per logging run (default 1,000,000; 200,000 with --quick)")
    args = parser.parse_args()

    key_dir = Path(tempfile.mkdtemp(prefix="wk-bench-"))
    if not settings.SIGNING_KEY_FILE:
        signing.key_file_create(key_dir / "signing-key.pem")
        settings.SIGNING_KEY_FILE = os.environ["SIGNING_KEY_FILE"] = str(key_dir / "signing-key.pem")
    token, X = setup()
    server = start_server(args.port)
    indexer = start_indexer()
    try:
        url = f"http://127.0.0.1:{args.port}"
        wk = watchkeeper_client.Deployment(url, token, SLUG, instance="bench")
        model = wk.model(buffer_rows=2_000_000, flush_rows=10_000, flush_interval=0.5, start_timeout=60,
                         senders=SENDERS)
        print(f"serving v{model.version} of {SLUG} (logistic regression, 30 features, 2 classes)")

        # Deferred: rows are buffered during the clock and sent between repeats, so the figure is what the
        # caller's thread itself does per predict. Concurrent: the senders encode and post meanwhile; they hold
        # the GIL while encoding (np.savez's copies, short), which a tight CPU-bound loop feels, and here the server
        # shares the cores.
        deferred = wk.model(buffer_rows=2_000_000, flush_rows=2_000_000, flush_interval=3600, start_timeout=60)
        calls, repeats = (2_000, 3) if args.quick else (20_000, 5)
        print("\n1. cost per call, logging on (median of interleaved repeats)")
        for label, runner in (("sending deferred", deferred), ("sending concurrently", model)):
            print(f"   {label}:")
            for batch, target in ((1, "≤ 5 µs"), (64, "≤ 5 %")):
                bare, client = overhead(runner, X, batch, calls if batch == 1 else calls // 4, repeats)
                for k, clock in enumerate(("wall", "caller's CPU")):
                    extra = client[k] - bare[k]
                    print(f"     batch {batch:>3}, {clock:>12}: bare run {bare[k]:7.2f} µs, predict {client[k]:7.2f} µs: "
                          f"+{extra:.2f} µs ({extra / bare[k]:+.1%}, {client[k] / bare[k]:.3f}× bare); target {target}")
        deferred.close()

        n_rows = args.rows or (200_000 if args.quick else 1_000_000)
        print(f"\n2. one client process logging to the server: {n_rows:,} predictions per run in calls of 1,000 rows, "
              f"{SENDERS} senders, batches of 10,000")
        from monitoring.models import Deployment

        deployment = Deployment.objects.get(slug=SLUG)
        rows = np.ascontiguousarray(np.resize(X, (1000, X.shape[1])))
        options = {"buffer_rows": 2_000_000, "flush_rows": 10_000, "flush_interval": 0.5, "start_timeout": 60,
                   "senders": SENDERS}
        runners = {"index in the request (baseline)": wk.model(index_in_request=True, **options), "client default": model}
        rates: dict[str, list[float]] = {label: [] for label in runners}
        for runner in runners.values():  # warm-up, not counted: the web threads' connections, the worker's first task
            log_and_count(runner, rows, 50_000, deployment)
        lost = 0
        for round_ in range(args.rounds):
            for label, runner in runners.items():
                stats_before = (runner.stats.sent_rows, runner.stats.dropped_rows, runner.stats.rejected_rows,
                                runner.stats.retries)
                accepted_s, indexed_s, (in_index, distinct, in_batches) = log_and_count(runner, rows, n_rows, deployment)
                sent, dropped, rejected, retries = (now - then for now, then in zip(
                    (runner.stats.sent_rows, runner.stats.dropped_rows, runner.stats.rejected_rows, runner.stats.retries),
                    stats_before))
                rates[label].append(n_rows / accepted_s)
                lost += (n_rows - in_batches) + (n_rows - distinct) + (in_index - distinct)
                print(f"   round {round_ + 1}, {label}: {n_rows / accepted_s:,.0f} predictions/s accepted "
                      f"(last acknowledged after {accepted_s:.2f} s); every id indexed after {indexed_s:.2f} s "
                      f"({n_rows / indexed_s:,.0f}/s)")
                print(f"      counted back: {in_batches:,} rows in batches, {in_index:,} index rows, {distinct:,} "
                      f"distinct ids; sent {sent:,}, dropped {dropped}, rejected {rejected}, retries {retries}")
        baseline, client = (statistics.median(rates[label]) for label in runners)
        print(f"   median accepted: client default {client:,.0f}/s vs baseline {baseline:,.0f}/s: "
              f"{client / baseline:.2f}x; target ≥ 100k/s, none lost ({'none' if lost == 0 else lost} lost or doubled)")
        result = model.predict(rows)
        batch = [_Chunk(1, rows, result.labels, result.probabilities, None, time.time())] * 10
        for label, encode in (("columnar (.npz, what it sends)", model._log._encode_columns), ("JSON rows", model._log._encode)):
            start = time.perf_counter()
            encode(batch)
            print(f"   the client's {label} encoding, one sender thread: {10_000 / (time.perf_counter() - start):,.0f} rows/s")
        wk.close()
        if lost:
            raise SystemExit(f"{lost} rows were lost or doubled")
    finally:
        for process in (indexer, server):
            process.terminate()
        for process in (indexer, server):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
