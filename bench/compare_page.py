"""A viewer opening the approval page of a candidate whose labelled production window holds 1,000,000 rows
(20 features, 3 classes): server time per request and what the request costs the web process in memory.

The statistics are computed first, as a worker computes them (workers/comparison.py, timed here too); the page
then reads the stored rows. Baseline, measured in the same run: the old in-request path, both models over the
window and the row-level paired bootstrap (monitoring.comparison.row_bootstrap_deltas). The baseline is a little
kinder than the old code was: it encodes labels with numpy instead of the old per-row Python loop.

Targets (issue 10): under 200 ms and under 50 MB per request.

    .venv/bin/python bench/compare_page.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
from _common import drop_deployment, make_deployment
from django.contrib.auth.models import User
from django.db import connection, reset_queries
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from monitoring import batches, selectors, services
from monitoring.comparison import compare, row_bootstrap_deltas
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import Membership, ModelVersion, Role, VersionComparisonResult
from monitoring.runtime import inspect_model
from monitoring.services import ingestion
from workers.comparison import comparison_compute
from workers.evaluation import runner_for

# whitenoise looks for STATIC_ROOT, which only `collectstatic` makes; the page needs no static file here.
warnings.filterwarnings("ignore", "No directory at", UserWarning)

SLUG = "bench-compare"
N_FEATURES = 20
CLASSES = ["0", "1", "2"]
BATCH = 10_000  # the largest JSON batch a client may send (MAX_PREDICTION_BATCH)
REQUESTS = 15  # page requests timed after warm-up; the median is reported
VIEWER = "bench-compare-viewer"


def truth(X: np.ndarray) -> np.ndarray:
    """The class a row belongs to: the larger of three linear scores, so both models learn it, imperfectly."""
    weights = np.random.default_rng(7).normal(size=(N_FEATURES, len(CLASSES)))
    return np.argmax(X @ weights + np.random.default_rng(8).normal(scale=1.5, size=(len(X), len(CLASSES))), axis=1)


def add_version(deployment, estimator, number: int, status: str) -> ModelVersion:
    """A version row without the audit trail (which is append-only, so the bench could not drop the deployment)."""
    data = estimator_to_onnx(estimator, feature_names=deployment.feature_names, class_labels=CLASSES)
    signature = inspect_model(data, expected_features=N_FEATURES)
    return ModelVersion.objects.create(
        deployment=deployment, number=number, status=status, sha256=services.blob_put(data), size_bytes=len(data),
        input_name=signature.input_name, input_shape=signature.input_shape, output_names=signature.output_names,
        label_output=signature.label_output, probability_output=signature.probability_output,
        class_labels=signature.class_labels, opset=signature.opset, producer=signature.producer,
        activated_at=timezone.now() if status == ModelVersion.Status.ACTIVE else None,
    )


def fill(deployment, n: int) -> None:
    """n labelled predictions over the last hour, in batches of BATCH, through the ingestion internals."""
    start_us = int(batches.to_timestamps_us(np.datetime64((timezone.now() - timedelta(hours=1)).replace(tzinfo=None))))
    rng = np.random.default_rng(0)
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        X = rng.normal(size=(size, N_FEATURES)).astype(np.float32)
        ids = [f"r{i}" for i in range(start, start + size)]
        columns = batches.Columns(
            joined_ids=batches.encode_ids(ids),
            timestamps_us=start_us + np.arange(start, start + size, dtype=np.int64) * 1000,
            features=X,
            predicted=rng.integers(0, len(CLASSES), size).astype(np.int16),
            probabilities=None,
        )
        ingestion._batch_store(deployment=deployment, columns=columns, key=f"bench-{start}", fingerprint=f"bench-{start}", source="api")
        ingestion._labels_store(deployment=deployment, ids=ids, rows=list(range(size)), codes=truth(X).astype(np.int16), received=size)


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss_growth_mb(run: Callable[[], object]) -> float:
    """How far the process's resident memory rose above where it started while `run` ran (Linux: VmHWM reset)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = rss_kib("VmRSS")
    run()
    return (rss_kib("VmHWM") - before) / 1024


def traced_peak_mb(run: Callable[[], object]) -> float:
    """Peak of the memory Python and numpy allocated while `run` ran, above what was allocated before."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        run()
        return (tracemalloc.get_traced_memory()[1] - base) / 2**20
    finally:
        tracemalloc.stop()


def old_in_request_path(deployment, active: ModelVersion, candidate: ModelVersion) -> None:
    """What the page did before: read the window, run both models, compare row by row."""
    end = timezone.now()
    window = selectors.production_window(
        deployment=deployment, start=end - timedelta(days=deployment.evaluation_window_days), end=end, labelled_only=True
    )
    answers = [runner_for(v).predict(window.X).labels for v in (active, candidate)]
    compare(window.labels, *answers, CLASSES)
    row_bootstrap_deltas(window.labels, *answers, CLASSES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    parser.add_argument(
        "--trace-baseline", action="store_true",
        help="also run the baseline under tracemalloc (4 more minutes at 1M rows; it agreed with RSS within 1 %%)",
    )
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000

    deployment = make_deployment(SLUG, n_features=N_FEATURES, classes=CLASSES)
    User.objects.filter(username=VIEWER).delete()
    viewer = User.objects.create_user(username=VIEWER)
    Membership.objects.create(team=deployment.team, user=viewer, role=Role.VIEWER)
    try:
        rng = np.random.default_rng(1)
        X_train = rng.normal(size=(5000, N_FEATURES)).astype(np.float32)
        y_train = np.asarray(CLASSES)[truth(X_train)]
        active = add_version(deployment, LogisticRegression(max_iter=1000).fit(X_train, y_train), 1, "active")
        candidate = add_version(
            deployment, DecisionTreeClassifier(max_depth=8, random_state=0).fit(X_train, y_train), 2, "candidate"
        )
        started = time.perf_counter()
        fill(deployment, n)
        print(f"stored and labelled {n:,} predictions in {n // BATCH:,} batches in {time.perf_counter() - started:.1f} s")

        # The worker's part, in this process: what compare_versions_task runs.
        source = selectors.comparison_sources(deployment=deployment)[-1]
        row = VersionComparisonResult.objects.create(
            deployment=deployment, active=active, candidate=candidate, source=source.source,
            window_key=source.window_key, description=source.description, window_days=source.window_days,
        )
        started = time.perf_counter()
        comparison_compute(result_id=row.pk)
        worker_seconds = time.perf_counter() - started
        row.refresh_from_db()
        assert row.status == "succeeded" and row.n_rows == n, (row.status, row.n_rows, row.error)
        stats = row.statistics
        print(f"worker: compared v2 with v1 on {row.n_rows:,} rows in {worker_seconds:.2f} s "
              f"(accuracy {stats['accuracy_active']:.3f} -> {stats['accuracy_candidate']:.3f}, "
              f"F1 change {stats['f1_delta']['estimate']:+.4f} [{stats['f1_delta']['low']:+.4f}, {stats['f1_delta']['high']:+.4f}])")

        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(viewer)
        url = reverse("version-compare", args=[SLUG, candidate.number])

        def view() -> None:
            response = client.get(url)
            assert response.status_code == 200 and b"McNemar p =" in response.content, response.status_code

        for _ in range(3):  # warm-up: templates, URL resolver, the first connection's queries
            view()
        times = []
        for _ in range(REQUESTS):
            start = time.perf_counter()
            view()
            times.append(time.perf_counter() - start)
        reset_queries()  # each request resets the log (request_started), so count from an empty one
        with CaptureQueriesContext(connection) as queries:
            view()
        n_queries = len(queries)  # now: the list is read from the connection's log, which the next request resets
        page_ms = statistics.median(times) * 1000
        page_traced = max(traced_peak_mb(view) for _ in range(3))
        page_rss = peak_rss_growth_mb(lambda: [view() for _ in range(REQUESTS)])
        print(f"page: median {page_ms:.1f} ms over {REQUESTS} requests (min {min(times) * 1000:.1f}, "
              f"max {max(times) * 1000:.1f}), {n_queries} queries; memory: tracemalloc peak {page_traced:.2f} MB, "
              f"RSS growth over {REQUESTS} requests {page_rss:.1f} MB (targets: < 200 ms, < 50 MB)")

        def old_path() -> None:
            old_in_request_path(deployment, active, candidate)

        started = time.perf_counter()
        old_rss = peak_rss_growth_mb(old_path)
        old_seconds = time.perf_counter() - started
        traced = ""
        if args.trace_baseline:
            traced = f", tracemalloc peak {traced_peak_mb(old_path):,.0f} MB"
        print(f"baseline (old in-request path, one request): {old_seconds:.2f} s, RSS growth {old_rss:,.0f} MB{traced}")
        print(f"ratio: the page answers {old_seconds * 1000 / page_ms:,.0f}x faster; the old request grew the "
              f"process by {old_rss:,.0f} MB where the page allocates {page_traced:.2f} MB at its peak")
    finally:
        User.objects.filter(username=VIEWER).delete()
        VersionComparisonResult.objects.filter(deployment__slug=SLUG).delete()
        drop_deployment(SLUG)


if __name__ == "__main__":
    main()
