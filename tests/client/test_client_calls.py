"""watchkeeper_client reports its predict calls (latency of each session run, calls, failed calls) with its
batches, in both wire formats, and failed calls alone when they logged no rows: against the live server."""

from __future__ import annotations

import numpy as np
import pytest
import watchkeeper_client
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from monitoring.callstats import percentile_us
from monitoring.models import CallStats, PredictionBatch
from tests.client.conftest import stored_rows
from tests.conftest import breast_cancer_split

pytestmark = pytest.mark.django_db(transaction=True)

X_TEST = breast_cancer_split()[2]


def _model(gateway, token, *, columnar: bool, instance: str = "pod-calls"):
    wk = watchkeeper_client.Deployment(gateway.url, token, "tumour", instance=instance)
    return wk.model(poll_wait=5, flush_interval=0.2, columnar=columnar)


def _totals() -> tuple[int, int, int]:
    rows = list(CallStats.objects.values_list("calls", "errors", "latency_histogram"))
    timed = sum(int(np.frombuffer(bytes(h), dtype="<u4").sum()) for _, _, h in rows)
    return sum(c for c, _, _ in rows), sum(e for _, e, _ in rows), timed


@pytest.mark.parametrize("columnar", [True, False], ids=["npz", "json"])
def test_each_call_is_timed_and_counted_with_its_batch(gateway, token, deployment, columnar):
    model = _model(gateway, token, columnar=columnar)
    try:
        for i in range(25):
            model.predict(X_TEST[i : i + 4])
        with pytest.raises(InvalidArgument):  # onnxruntime refuses a row of the wrong width: a failed call
            model.predict(np.zeros((2, 3), dtype=np.float32))
        for i in range(5):
            model.predict(X_TEST[i : i + 2])
        assert model.flush(timeout=30)
    finally:
        model.close()

    assert stored_rows(deployment) == 25 * 4 + 5 * 2
    assert _totals() == (31, 1, 30)
    stats = list(CallStats.objects.all())
    batch_ids = set(PredictionBatch.objects.values_list("pk", flat=True))
    assert {s.batch_id for s in stats} <= batch_ids  # each rode on a batch: no report without rows was needed
    assert {(s.instance, s.version.number) for s in stats} == {("pod-calls", 1)}
    # A session run of four rows of a logistic regression: tens of µs to a few ms, not seconds.
    histogram = sum(np.frombuffer(bytes(s.latency_histogram), dtype="<u4").astype(np.int64) for s in stats)
    assert 1 <= percentile_us(histogram, 0.5) < 200_000


@pytest.mark.parametrize("columnar", [True, False], ids=["npz", "json"])
def test_failed_calls_without_any_rows_are_reported_alone(gateway, token, deployment, columnar):
    model = _model(gateway, token, columnar=columnar, instance="pod-broken")
    try:
        for _ in range(3):
            with pytest.raises(InvalidArgument):
                model.predict(np.zeros((1, 5), dtype=np.float32))
        assert model.flush(timeout=30)
    finally:
        model.close()

    assert not PredictionBatch.objects.exists()
    stats = CallStats.objects.get()
    assert (stats.batch_id, stats.calls, stats.errors, stats.version.number, stats.instance) == (None, 3, 3, 1, "pod-broken")


def test_a_call_split_over_two_batches_is_counted_once(gateway, token, deployment):
    model = _model(gateway, token, columnar=True)
    try:
        rows = X_TEST[np.arange(15_000) % len(X_TEST)]  # more than one batch holds (10,000 rows)
        model.predict(rows, ids=[f"big-{i}" for i in range(15_000)])
        assert model.flush(timeout=60)
    finally:
        model.close()

    assert PredictionBatch.objects.count() == 2 and stored_rows(deployment) == 15_000
    assert _totals() == (1, 0, 1)
