"""services/ingestion.py: predictions into columnar batches, idempotency and conflicts, the indexer, and large batches in the media store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from monitoring import selectors, services
from monitoring.models import Alert, PredictionBatch, ReferenceProfile
from monitoring.services import Conflict, ValidationFailed
from tests.conftest import FEATURES, breast_cancer_split
from tests.monitoring.services.ingestion_helpers import (
    T0,
    _media_files,
    _parquet,
    _table,
    index,
    prediction_rows,
    window,
)

# ---------------------------------------------------------------- storing and reading back


@pytest.mark.parametrize("as_list", [False, True], ids=["features-by-name", "features-as-list"])
def test_a_batch_reads_back_exactly_as_sent(deployment, as_list):
    rows = prediction_rows(40, as_list=as_list)

    result = services.predictions_ingest(deployment=deployment, rows=rows)

    assert (result.received, result.created, result.replayed) == (40, 40, False)
    stored = window(deployment)
    _, _, X_test, _ = breast_cancer_split()
    assert np.array_equal(stored.X, X_test[:40].astype(np.float32))
    assert stored.request_ids.tolist() == [row["id"] for row in rows]
    assert stored.predicted.tolist() == [row["predicted_label"] for row in rows]
    assert stored.timestamps.tolist() == [T0.replace(tzinfo=None) + timedelta(seconds=i) for i in range(40)]
    assert np.allclose(stored.probabilities, [[0.2, 0.8]] * 40)
    assert stored.labels is None
    assert PredictionBatch.objects.get().version.number == 1


def test_a_window_keeps_only_its_rows_in_time_order_across_batches(deployment):
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(10, start=10))
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(10, start=0))

    stored = selectors.production_window(
        deployment=deployment, start=T0 + timedelta(seconds=5), end=T0 + timedelta(seconds=15)
    )

    assert stored.request_ids.tolist() == [f"req-{i}" for i in range(5, 15)]
    assert stored.X.shape == (10, len(FEATURES))
    assert len(selectors.production_window(deployment=deployment, start=T0, end=T0 + timedelta(days=1), limit=3).X) == 3


def test_an_empty_window_has_the_right_shapes(deployment):
    stored = window(deployment, labelled_only=True)

    assert stored.X.shape == (0, len(FEATURES))
    assert len(stored.predicted) == len(stored.labels) == len(stored.request_ids) == 0


# ---------------------------------------------------------------- retries and conflicts


def test_a_retried_batch_is_stored_once_and_answered_the_same(deployment):
    rows = prediction_rows(20)

    first = services.predictions_ingest(deployment=deployment, rows=rows)
    again = services.predictions_ingest(deployment=deployment, rows=rows)

    assert first.status == again.status == "indexed"
    assert (again.batch_id, again.received, again.created, again.replayed) == (first.batch_id, 20, 20, True)
    assert deployment.predictions.count() == 20
    assert PredictionBatch.objects.count() == 1


def test_a_large_batch_retried_before_and_after_indexing_is_stored_once(deployment, deferred):
    rows = prediction_rows(20)

    first = services.predictions_ingest(deployment=deployment, rows=rows)
    while_pending = services.predictions_ingest(deployment=deployment, rows=rows)
    index(deployment)
    once_indexed = services.predictions_ingest(deployment=deployment, rows=rows)

    assert (first.status, while_pending.status, once_indexed.status) == ("pending", "pending", "indexed")
    for again in (while_pending, once_indexed):
        assert (again.batch_id, again.received, again.created, again.replayed) == (first.batch_id, 20, 20, True)
    assert deployment.predictions.count() == 20
    assert PredictionBatch.objects.count() == 1


def test_an_idempotency_key_reused_with_a_different_body_is_refused_and_stores_nothing(deployment):
    first = services.predictions_ingest(deployment=deployment, rows=prediction_rows(5), idempotency_key="batch-7")

    with pytest.raises(ValidationFailed, match="Idempotency-Key reused with a different body"):
        services.predictions_ingest(deployment=deployment, rows=prediction_rows(8), idempotency_key="batch-7")
    again = services.predictions_ingest(deployment=deployment, rows=prediction_rows(5), idempotency_key="batch-7")

    assert (again.batch_id, again.created, again.replayed) == (first.batch_id, 5, True)
    assert deployment.predictions.count() == 5
    assert PredictionBatch.objects.count() == 1


def test_a_new_batch_reusing_a_stored_id_is_a_conflict_at_once_and_stores_nothing(deployment):
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(3))

    with pytest.raises(Conflict) as failure:
        services.predictions_ingest(deployment=deployment, rows=prediction_rows(4, start=2))

    assert failure.value.errors == [{"row": 0, "field": "id", "message": "id 'req-2' is already stored in another batch"}]
    assert deployment.predictions.count() == 3
    assert PredictionBatch.objects.count() == 1


def test_a_large_batch_reusing_an_indexed_id_is_rejected_by_the_indexer_and_keeps_nothing(deployment, deferred):
    kept = services.predictions_ingest(deployment=deployment, rows=prediction_rows(3))
    late = services.predictions_ingest(deployment=deployment, rows=prediction_rows(4, start=2), idempotency_key="b-2")

    outcome = index(deployment)

    assert (outcome.indexed_batches, [b.pk for b in outcome.rejected]) == (1, [late.batch_id])
    rejected = PredictionBatch.objects.get(pk=late.batch_id)
    assert rejected.state == PredictionBatch.State.REJECTED and rejected.indexed_at is not None
    assert rejected.result["errors"] == [{"row": 0, "field": "id", "message": "id 'req-2' is already stored in another batch"}]
    assert bytes(rejected.features) == b"" and bytes(rejected.request_ids) == b""
    assert sorted(deployment.predictions.values_list("request_id", flat=True)) == ["req-0", "req-1", "req-2"]
    assert window(deployment).request_ids.tolist() == ["req-0", "req-1", "req-2"]
    assert PredictionBatch.objects.get(pk=kept.batch_id).state == PredictionBatch.State.INDEXED
    alert = Alert.objects.get(deployment=deployment, kind=Alert.Kind.BATCH_REJECTED)
    assert str(late.batch_id) in alert.title
    # A retry of the rejected batch is told so, not answered as if it had been stored.
    with pytest.raises(Conflict, match="was rejected"):
        services.predictions_ingest(deployment=deployment, rows=prediction_rows(4, start=2), idempotency_key="b-2")


@pytest.mark.parametrize(
    "stamps",
    [
        ["2025-03-01T12:00:00Z", "2025-03-01T14:00:01+02:00"],  # zoned: Arrow's fast path
        ["2025-03-01T12:00:00", "2025-03-01 12:00:01.000000"],  # naive means UTC: Arrow's naive cast
        ["2025-03-01T12:00:00Z", "2025-03-01T12:00:01"],  # mixed: row by row
    ],
    ids=["zoned", "naive", "mixed"],
)
def test_json_timestamps_read_as_utc_whether_naive_zoned_or_mixed(deployment, stamps):
    rows = prediction_rows(2)
    for row, stamp in zip(rows, stamps):
        row["timestamp"] = stamp

    services.predictions_ingest(deployment=deployment, rows=rows)

    stored = selectors.production_window(
        deployment=deployment, start=datetime(2025, 3, 1, tzinfo=UTC), end=datetime(2025, 3, 2, tzinfo=UTC)
    )
    assert stored.timestamps.tolist() == [
        datetime(2025, 3, 1, 12), datetime(2025, 3, 1, 12, 0, 1)
    ]


def test_indexing_is_idempotent_and_takes_batches_in_arrival_order(deployment, deferred):
    first = services.predictions_ingest(deployment=deployment, rows=prediction_rows(3))
    second = services.predictions_ingest(deployment=deployment, rows=prediction_rows(3, start=3))

    assert index(deployment).indexed_rows == 6
    assert index(deployment).indexed_rows == 0
    assert sorted(deployment.predictions.values_list("batch_id", flat=True).distinct()) == [first.batch_id, second.batch_id]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("drain_s", "indexed_by_the_run"), [(0.0, 1), (60.0, 2)], ids=["one-pass", "draining"])
def test_an_indexer_draining_also_takes_the_batches_stored_while_it_works(deployment, deferred, drain_s, indexed_by_the_run):
    import threading

    import redis
    from django.conf import settings
    from django.db import connection, connections

    from monitoring import indexing

    # An indexer counts as queued: no task is published, so no worker of the session indexes these batches.
    flag = indexing.pending_flag(deployment.pk)
    redis.Redis.from_url(settings.REDIS_URL).set(flag, 1, ex=60)
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(3))
    stored_meanwhile: list[int] = []

    def store_another() -> None:
        try:
            stored_meanwhile.append(services.predictions_ingest(deployment=deployment, rows=prediction_rows(3, start=3)).batch_id)
        finally:
            connections.close_all()

    def a_batch_arrives_while_the_first_is_indexed(execute, sql, params, many, context):
        if not stored_meanwhile and sql.startswith(f'UPDATE "{PredictionBatch._meta.db_table}" SET "state"'):
            writer = threading.Thread(target=store_another)
            writer.start()
            writer.join()
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(a_batch_arrives_while_the_first_is_indexed):
            outcome = services.batches_index(deployment_id=deployment.pk, wait=False, drain_s=drain_s)
    finally:
        redis.Redis.from_url(settings.REDIS_URL).delete(flag)

    assert len(stored_meanwhile) == 1
    assert outcome.indexed_batches == indexed_by_the_run
    assert PredictionBatch.objects.get(pk=stored_meanwhile[0]).state == (
        PredictionBatch.State.INDEXED if indexed_by_the_run == 2 else PredictionBatch.State.PENDING)


# ---------------------------------------------------------------- large batches in the media store


@pytest.fixture
def in_media(settings, tmp_path):
    """Every batch counts as large enough to keep its columns in the media store, one of its own."""
    settings.BATCH_COLUMNS_IN_MEDIA_FROM_BYTES = 0
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings


def test_a_large_batch_keeps_its_columns_in_the_media_store_and_reads_back_the_same(deployment, in_media, deferred):
    rows = prediction_rows(30)
    result = services.predictions_ingest(deployment=deployment, rows=rows)

    batch = PredictionBatch.objects.get(pk=result.batch_id)
    assert batch.columns_sha256 in _media_files(in_media)
    assert bytes(batch.features) == b"" and bytes(batch.request_ids) == b""
    assert index(deployment).indexed_rows == 30  # the indexer reads the ids from the file
    services.labels_ingest(deployment=deployment, rows=[{"id": "req-3", "label": "0"}])
    stored, labelled = window(deployment), window(deployment, labelled_only=True)
    _, _, X_test, _ = breast_cancer_split()
    assert np.array_equal(stored.X, X_test[:30].astype(np.float32))
    assert stored.request_ids.tolist() == [row["id"] for row in rows]
    assert np.allclose(stored.probabilities, [[0.2, 0.8]] * 30)
    assert (labelled.request_ids.tolist(), labelled.labels.tolist()) == (["req-3"], ["0"])
    assert selectors.prediction_counts(deployment=deployment, since=T0 + timedelta(seconds=10))[0] == 20


def test_a_changed_file_in_the_media_store_is_never_read_as_traffic(deployment, in_media):
    from monitoring.storage import BlobIntegrityError

    batch = PredictionBatch.objects.get(pk=services.predictions_ingest(deployment=deployment, rows=prediction_rows(5)).batch_id)
    [path] = (in_media.MEDIA_ROOT / "blobs").glob(f"*/*/{batch.columns_sha256}")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1  # one bit, inside the features
    path.write_bytes(bytes(data))

    with pytest.raises(BlobIntegrityError):
        window(deployment)


def test_the_file_of_a_batch_that_failed_to_store_is_collected_and_no_other(deployment, in_media):
    kept = services.predictions_ingest(deployment=deployment, rows=prediction_rows(3))
    with pytest.raises(Conflict):
        services.predictions_ingest(deployment=deployment, rows=prediction_rows(4, start=2))
    assert len(_media_files(in_media)) == 2  # left for the collector: another request may have stored the same bytes

    assert services.storage_collect_garbage(older_than=timedelta(0)) == 1
    assert _media_files(in_media) == {PredictionBatch.objects.get(pk=kept.batch_id).columns_sha256}


def test_garbage_collection_keeps_every_file_a_row_names(in_media, deployment):
    from workers.drift_check import reference_profile

    reference_profile(deployment, deployment.active_version())
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(3))
    version = deployment.active_version()
    named = {version.sha256, version.recipe_sha256, *deployment.datasets.values_list("sha256", flat=True),
             *ReferenceProfile.objects.values_list("sha256", flat=True),
             *PredictionBatch.objects.values_list("columns_sha256", flat=True)}

    deleted = services.storage_collect_garbage(older_than=timedelta(0))

    assert deleted == 0 and len(named) == 6 and _media_files(in_media) == named
    assert [services.blob_read(sha) for sha in named]  # each still reads, verified
    assert window(deployment).request_ids.tolist() == ["req-0", "req-1", "req-2"]


def test_storing_an_old_unnamed_file_again_makes_it_young_so_it_is_kept(deployment, in_media):
    import os

    sha = services.blob_put(b"the same bytes")
    [path] = (in_media.MEDIA_ROOT / "blobs").glob(f"*/*/{sha}")
    two_hours_ago = path.stat().st_mtime - 7200
    os.utime(path, (two_hours_ago, two_hours_ago))

    services.blob_put(b"the same bytes")  # a new row about to name it, not yet committed

    assert services.storage_collect_garbage() == 0 and path.exists()
    os.utime(path, (two_hours_ago, two_hours_ago))
    assert services.storage_collect_garbage() == 1 and not path.exists()


def test_a_batch_whose_file_is_gone_is_rejected_and_the_ones_behind_it_are_indexed(deployment, in_media, deferred):
    lost = services.predictions_ingest(deployment=deployment, rows=prediction_rows(3))
    later = services.predictions_ingest(deployment=deployment, rows=prediction_rows(3, start=3))
    for path in (in_media.MEDIA_ROOT / "blobs").glob(f"*/*/{PredictionBatch.objects.get(pk=lost.batch_id).columns_sha256}"):
        path.unlink()

    outcome = index(deployment)

    assert ([b.pk for b in outcome.rejected], outcome.indexed_rows) == ([lost.batch_id], 3)
    assert "could not be read from the media store" in PredictionBatch.objects.get(pk=lost.batch_id).result["message"]
    assert PredictionBatch.objects.get(pk=later.batch_id).state == PredictionBatch.State.INDEXED
    assert Alert.objects.filter(deployment=deployment, kind=Alert.Kind.BATCH_REJECTED).exists()
    assert window(deployment).request_ids.tolist() == ["req-3", "req-4", "req-5"]


def test_garbage_collection_deletes_the_files_of_rejected_batches_only_once_they_are_old(deployment, in_media, deferred):
    kept = services.predictions_ingest(deployment=deployment, rows=prediction_rows(3))
    late = services.predictions_ingest(deployment=deployment, rows=prediction_rows(4, start=2), idempotency_key="b-2")
    late_file = PredictionBatch.objects.get(pk=late.batch_id).columns_sha256
    index(deployment)

    young = services.storage_collect_garbage()
    old = services.storage_collect_garbage(older_than=timedelta(0))

    assert (young, old) == (0, 1)
    assert PredictionBatch.objects.get(pk=late.batch_id).columns_sha256 == ""
    assert _media_files(in_media) == {PredictionBatch.objects.get(pk=kept.batch_id).columns_sha256}
    assert late_file not in _media_files(in_media)
    assert window(deployment).request_ids.tolist() == ["req-0", "req-1", "req-2"]


def test_a_file_whose_ids_are_not_text_is_refused_with_a_message(deployment):
    table = _table(2)
    table = table.set_column(0, "id", pa.array([b"ok", b"\xff\xfe"], type=pa.binary()))

    with pytest.raises(ValidationFailed, match="cannot be read as expected"):
        services.predictions_upload(deployment=deployment, data=_parquet(table), filename="t.parquet")

    assert not PredictionBatch.objects.exists()
