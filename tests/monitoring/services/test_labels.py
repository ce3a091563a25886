"""services/ingestion.py: ground-truth labels joined to stored predictions by id, all or nothing."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
import redis
from django.conf import settings as django_settings

from monitoring import indexing, selectors, services
from monitoring.models import Prediction, PredictionBatch
from monitoring.services import ValidationFailed, ingestion
from tests.conftest import breast_cancer_split
from tests.monitoring.services.ingestion_helpers import T0, _parquet, _table, prediction_rows, window

# ---------------------------------------------------------------- labels


def test_labels_arriving_later_join_by_id_and_fill_the_labelled_window(deployment):
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(6))

    result = services.labels_ingest(deployment=deployment, rows=[{"id": "req-4", "label": "0"}, {"id": "req-1", "label": 1}])

    assert (result.received, result.updated) == (2, 2)
    labelled = window(deployment, labelled_only=True)
    assert labelled.request_ids.tolist() == ["req-1", "req-4"]
    assert labelled.labels.tolist() == ["1", "0"]
    assert labelled.predicted.tolist() == ["1", "1"]
    _, _, X_test, _ = breast_cancer_split()
    assert np.array_equal(labelled.X, X_test[[1, 4]].astype(np.float32))
    assert Prediction.objects.get(request_id="req-4").labelled_at is not None


def test_a_label_sent_again_overwrites_the_first(deployment):
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(2))
    services.labels_ingest(deployment=deployment, rows=[{"id": "req-0", "label": "0"}])

    services.labels_ingest(deployment=deployment, rows=[{"id": "req-0", "label": "1"}])

    assert window(deployment, labelled_only=True).labels.tolist() == ["1"]


def test_a_label_for_an_unknown_id_stores_nothing(deployment):
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(2))

    with pytest.raises(ValidationFailed) as failure:
        services.labels_ingest(deployment=deployment, rows=[{"id": "req-0", "label": "0"}, {"id": "nope", "label": "1"}])

    assert failure.value.errors == [{"row": 1, "field": "id", "message": "no prediction with id 'nope'"}]
    assert not deployment.predictions.filter(label_index__isnull=False).exists()


def test_conflicting_labels_for_one_id_are_refused(deployment):
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(2))

    with pytest.raises(ValidationFailed) as failure:
        services.labels_ingest(deployment=deployment, rows=[{"id": "req-0", "label": "0"}, {"id": "req-0", "label": "1"}])

    assert failure.value.errors[0]["row"] == 1
    assert not deployment.predictions.filter(label_index__isnull=False).exists()


def test_a_large_label_file_joins_every_row(deployment):
    services.predictions_upload(deployment=deployment, data=_parquet(_table(100)), filename="t.parquet")
    labels = pa.table({"id": [f"file-{i}" for i in range(100)], "label": [str(i % 2) for i in range(100)]})

    result = services.labels_upload(deployment=deployment, data=_parquet(labels), filename="labels.parquet")

    assert result.updated == 100
    assert window(deployment, labelled_only=True).labels.tolist() == [str(i % 2) for i in range(100)]


def test_the_summary_counts_recent_predictions_from_batch_headers(deployment):
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(10))

    count, last = selectors.prediction_counts(deployment=deployment, since=T0 + timedelta(seconds=6))

    assert (count, last) == (4, T0 + timedelta(seconds=9))


def test_ids_with_csv_and_copy_metacharacters_survive_storage_and_label_joins(deployment):
    rows = prediction_rows(5, as_list=True)
    odd = ['a,b "quoted"', "back\\slash\\N", " spaced\ttab ", "ünïcødé-€", "\\."]
    for row, request_id in zip(rows, odd):
        row["id"] = request_id

    services.predictions_ingest(deployment=deployment, rows=rows)
    services.labels_ingest(deployment=deployment, rows=[{"id": request_id, "label": "0"} for request_id in odd])

    assert set(deployment.predictions.values_list("request_id", flat=True)) == set(odd)
    assert window(deployment, labelled_only=True).request_ids.tolist() == odd


def test_the_index_rows_carry_each_id_timestamp_and_offset_exactly(deployment):
    # The index is written as a binary COPY built with numpy (monitoring/pgcopy.py), sorted by id: ids of
    # every length, multi-byte UTF-8 included, must land in the right row with the right timestamp and offset.
    rows = prediction_rows(5)
    ids = ["a", "é-ü-2", "x" * 128, "数据-4", "5"]
    for row, request_id in zip(rows, ids):
        row["id"] = request_id

    result = services.predictions_ingest(deployment=deployment, rows=rows)

    stored = {p.request_id: (p.timestamp, p.batch_id, p.row) for p in Prediction.objects.filter(deployment=deployment)}
    assert stored == {request_id: (T0 + timedelta(seconds=i), result.batch_id, i) for i, request_id in enumerate(ids)}
    assert services.labels_ingest(deployment=deployment, rows=[{"id": "数据-4", "label": "1"}]).updated == 1
    assert Prediction.objects.get(deployment=deployment, request_id="数据-4").label_index == 1


def test_the_binary_copy_of_a_batch_row_names_every_column_of_the_table():
    # ingestion._BATCH_COLUMNS spells out the batch row for COPY (FORMAT binary). A column added to
    # PredictionBatch without being added there would be left NULL (or fail NOT NULL) on Postgres only.
    columns = {field.column for field in PredictionBatch._meta.concrete_fields}

    assert {name for name, _ in ingestion._BATCH_COLUMNS} == columns


@pytest.mark.django_db(transaction=True)
def test_an_indexer_that_finds_the_deployment_busy_returns_at_once_and_says_so(deployment, deferred):
    import psycopg2
    from django.db import connection

    # The indexer counts as queued already, so no worker of the session indexes the batch behind this test's back.
    flag = indexing.pending_flag(deployment.pk)
    redis.Redis.from_url(django_settings.REDIS_URL).set(flag, 1, ex=60)
    stored = services.predictions_ingest(deployment=deployment, rows=prediction_rows(3))
    settings = connection.settings_dict
    other = psycopg2.connect(dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"])
    try:
        with other.cursor() as cursor:  # another indexer at work: it holds the deployment's row
            cursor.execute("SELECT id FROM monitoring_deployment WHERE id = %s FOR NO KEY UPDATE", [deployment.pk])
        busy = services.batches_index(deployment_id=deployment.pk, wait=False)
    finally:
        other.rollback()
        other.close()
    free = services.batches_index(deployment_id=deployment.pk, wait=False)
    redis.Redis.from_url(django_settings.REDIS_URL).delete(flag)

    assert (busy.busy, busy.indexed_rows) == (True, 0)
    assert (free.busy, free.indexed_rows) == (False, 3)
    assert PredictionBatch.objects.get(pk=stored.batch_id).state == PredictionBatch.State.INDEXED


def _stored_by_request(deployment, rows):
    services.predictions_ingest(deployment=deployment, rows=rows)


def _stored_then_indexed(deployment, rows):
    # The large-batch path: stored pending, then indexed by the indexer (a worker) in its own transaction.
    ingestion_threshold = ingestion.INDEX_IN_REQUEST_UP_TO
    ingestion.INDEX_IN_REQUEST_UP_TO = 0
    try:
        services.predictions_ingest(deployment=deployment, rows=rows)
    finally:
        ingestion.INDEX_IN_REQUEST_UP_TO = ingestion_threshold
    services.batches_index(deployment_id=deployment.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", [_stored_by_request, _stored_then_indexed], ids=["indexed-in-request", "by-the-indexer"])
def test_labels_whose_predictions_commit_while_they_are_joined_are_refused_not_lost(deployment, store):
    # Labels often race their own predictions (the client buffers and retries them). Here the predictions'
    # index rows commit in another connection just after the label UPDATE has run, before anything else the
    # label request does: the UPDATE saw none of them, so the answer must be a refusal that the client
    # retries, never a 200 for labels that were not stored (bench/load.py lost 25 acknowledged labels so).
    import threading

    from django.db import connection, connections

    # The indexer counts as queued already: no Celery task is published for the batch (no worker reads it here).
    flag = indexing.pending_flag(deployment.pk)
    redis.Redis.from_url(django_settings.REDIS_URL).set(flag, 1, ex=60)
    rows = prediction_rows(3)
    labels = [{"id": row["id"], "label": "0"} for row in rows]

    def in_another_connection() -> None:
        try:
            store(deployment, rows)
        finally:
            connections.close_all()

    def commit_predictions_after_the_label_update(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith(f"UPDATE {Prediction._meta.db_table} "):
            writer = threading.Thread(target=in_another_connection)
            writer.start()
            writer.join()
        return result

    try:
        with connection.execute_wrapper(commit_predictions_after_the_label_update):
            with pytest.raises(ValidationFailed) as refused:
                services.labels_ingest(deployment=deployment, rows=labels)
    finally:
        redis.Redis.from_url(django_settings.REDIS_URL).delete(flag)

    assert [error["row"] for error in refused.value.errors] == [0, 1, 2]
    assert deployment.predictions.count() == 3
    assert not deployment.predictions.filter(label_index__isnull=False).exists()
    # The client's retry, a moment later, stores every label once.
    assert services.labels_ingest(deployment=deployment, rows=labels).updated == 3
    assert deployment.predictions.filter(label_index=0).count() == 3
