"""Ingestion into columnar batches: validation, idempotency, conflicts, labels and the window read-back."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from monitoring import indexing, selectors, services
from monitoring.models import Alert, Prediction, PredictionBatch, ReferenceProfile
from monitoring.services import Conflict, TooLarge, ValidationFailed
from tests.conftest import CLASSES, FEATURES, breast_cancer_split

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


def index(deployment) -> indexing.IndexOutcome:
    """What the worker does moments after a large batch is accepted (workers.tasks.index_batches_task)."""
    return services.batches_index(deployment_id=deployment.pk)


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


# ---------------------------------------------------------------- validation


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


@pytest.mark.parametrize(
    ("spoil", "field", "message"),
    [
        (_missing_feature, "features", "missing feature(s): f7"),
        (_nan_feature, "features.f3", "must be finite"),
        (_text_feature, "features.f2", "must be a number, got str"),
        (_bool_feature, "features.f2", "must be a number, got bool"),
        (_short_list, "features", "expected 30 values, got 29"),
        (_unknown_label, "predicted_label", "must be one of ['0', '1']"),
        (_bad_timestamp, "timestamp", "must be an ISO 8601 date-time"),
        (_duplicate_id, "id", "duplicate id 'req-1' (also row 1)"),
        (_bad_probabilities, "probabilities", "must be 2 finite numbers in [0, 1]"),
        (_huge_feature, "features.f0", "beyond the float32 range"),
    ],
    ids=["missing-feature", "nan", "text", "bool", "short-list", "unknown-label", "timestamp", "duplicate-id",
         "probabilities", "float32-overflow"],
)
def test_a_bad_row_rejects_the_whole_batch_naming_row_and_field(deployment, spoil, field, message):
    rows = prediction_rows(5)
    spoil(rows[3])

    with pytest.raises(ValidationFailed) as failure:
        services.predictions_ingest(deployment=deployment, rows=rows)

    assert "nothing was stored" in failure.value.message
    [error] = failure.value.errors
    assert (error["row"], error["field"]) == (3, field)
    assert message in error["message"]
    assert not Prediction.objects.exists()
    assert not PredictionBatch.objects.exists()


def test_a_deployment_that_allows_nan_stores_it(deployment):
    deployment.allow_non_finite = True
    deployment.save()
    rows = prediction_rows(3, as_list=True)
    rows[1]["features"][4] = math.nan
    rows[2]["features"][0] = math.inf

    services.predictions_ingest(deployment=deployment, rows=rows)

    X = window(deployment).X
    assert np.isnan(X[1, 4]) and np.isinf(X[2, 0])
    assert np.isfinite(X[0]).all()


def test_rows_with_and_without_probabilities_mix(deployment):
    rows = prediction_rows(3)
    rows[1]["probabilities"] = None

    services.predictions_ingest(deployment=deployment, rows=rows)

    P = window(deployment).probabilities
    assert np.isnan(P[1]).all()
    assert np.allclose(P[[0, 2]], [[0.2, 0.8], [0.2, 0.8]])


def test_a_batch_over_the_row_limit_is_too_large(deployment, settings):
    settings.MAX_PREDICTION_BATCH = 4

    with pytest.raises(TooLarge, match="The batch has 5 predictions; the limit is 4"):
        services.predictions_ingest(deployment=deployment, rows=prediction_rows(5))

    assert not PredictionBatch.objects.exists()


# ---------------------------------------------------------------- files


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


@pytest.mark.parametrize(("encode", "name"), [(_csv, "traffic.csv"), (_parquet, "traffic.parquet")])
def test_a_file_upload_stores_every_row_once(deployment, encode, name):
    data = encode(_table(50))

    first = services.predictions_upload(deployment=deployment, data=data, filename=name)
    again = services.predictions_upload(deployment=deployment, data=data, filename=name)

    assert (first.created, again.replayed) == (50, True)
    stored = window(deployment)
    _, _, X_test, _ = breast_cancer_split()
    assert np.array_equal(stored.X, X_test[:50].astype(np.float32))
    assert stored.request_ids.tolist() == [f"file-{i}" for i in range(50)]
    assert deployment.predictions.count() == 50


def test_file_feature_columns_of_any_numeric_type_store_their_values(deployment):
    from decimal import Decimal

    table = _table(3)
    columns = {
        FEATURES[0]: pa.array([Decimal("1.25"), Decimal("-2"), Decimal("3.5")], type=pa.decimal128(6, 2)),
        FEATURES[1]: pa.array([" 1.5", "2", "1e3"]),  # text Arrow cannot cast, Python reads
        FEATURES[2]: pa.array([1, 2, 3], type=pa.int8()),
        FEATURES[3]: pa.array([0.5, 1.5, 2.5], type=pa.float32()),
    }
    for name, values in columns.items():
        table = table.set_column(table.column_names.index(name), name, values)

    services.predictions_upload(deployment=deployment, data=_parquet(table), filename="t.parquet")

    assert window(deployment).X[:, :4].tolist() == [[1.25, 1.5, 1, 0.5], [-2, 2, 2, 1.5], [3.5, 1000, 3, 2.5]]


def test_a_true_false_feature_column_is_refused(deployment):
    table = _table(3)
    table = table.set_column(table.column_names.index(FEATURES[2]), FEATURES[2], pa.array([True, False, True]))

    with pytest.raises(ValidationFailed) as failure:
        services.predictions_upload(deployment=deployment, data=_parquet(table), filename="t.parquet")

    assert failure.value.errors[0]["field"] == FEATURES[2]
    assert not PredictionBatch.objects.exists()


def test_file_probabilities_are_stored_and_checked_per_cell(deployment):
    p1 = np.array([0.9, 0.2, 0.6])
    good = _table(3).append_column(f"proba_{CLASSES[0]}", pa.array(1 - p1)).append_column(f"proba_{CLASSES[1]}", pa.array(p1))
    spoilt = good.column_names.index(f"proba_{CLASSES[1]}")
    bad = good.set_column(spoilt, f"proba_{CLASSES[1]}", pa.array([0.9, 1.2, 0.6]))

    with pytest.raises(ValidationFailed) as failure:
        services.predictions_upload(deployment=deployment, data=_parquet(bad), filename="t.parquet")
    services.predictions_upload(deployment=deployment, data=_parquet(good), filename="t.parquet")

    assert [(e["row"], e["field"]) for e in failure.value.errors] == [(1, f"proba_{CLASSES[1]}")]
    assert np.allclose(window(deployment).probabilities, np.column_stack([1 - p1, p1]))


@pytest.mark.parametrize(
    "stamps",
    [
        ["2025-03-01 12:00:00.250000", "2025-03-01T12:00:01"],  # naive: UTC (pyarrow's own CSV writes these)
        ["2025-03-01T13:00:00.25+01:00", "2025-03-01T12:00:01Z"],  # zoned
        ["2025-03-01T12:00:00.25", "2025-03-01T13:00:01+01:00"],  # a mix: the row-by-row pass
    ],
    ids=["naive", "zoned", "mixed"],
)
def test_file_timestamps_read_as_utc_whether_naive_zoned_or_mixed(deployment, stamps):
    table = _table(2).set_column(1, "timestamp", pa.array(stamps))

    services.predictions_upload(deployment=deployment, data=_csv(table), filename="t.csv")

    assert window(deployment).timestamps.tolist() == [
        T0.replace(tzinfo=None) + timedelta(microseconds=250_000), T0.replace(tzinfo=None) + timedelta(seconds=1)
    ]


def test_a_bad_cell_in_a_file_names_row_and_column_and_stores_nothing(deployment):
    data = _csv(_table(10)).replace(b"\n", b"\n", 1)
    lines = data.split(b"\n")
    cells = lines[4].split(b",")
    cells[5] = b"oops"
    lines[4] = b",".join(cells)

    with pytest.raises(ValidationFailed) as failure:
        services.predictions_upload(deployment=deployment, data=b"\n".join(lines), filename="bad.csv")

    [error] = failure.value.errors
    assert (error["row"], error["field"]) == (3, FEATURES[2])
    assert "'oops' is not a number" in error["message"]
    assert not PredictionBatch.objects.exists()


def test_a_file_missing_a_feature_column_is_refused(deployment):
    with pytest.raises(ValidationFailed, match="lacks column"):
        services.predictions_upload(deployment=deployment, data=_csv(_table(3).drop_columns(["f4"])), filename="x.csv")


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
    # services._BATCH_COLUMNS spells out the batch row for COPY (FORMAT binary). A column added to
    # PredictionBatch without being added there would be left NULL (or fail NOT NULL) on Postgres only.
    columns = {field.column for field in PredictionBatch._meta.concrete_fields}

    assert {name for name, _ in services._BATCH_COLUMNS} == columns


@pytest.mark.django_db(transaction=True)
def test_an_indexer_that_finds_the_deployment_busy_returns_at_once_and_says_so(deployment, deferred):
    import psycopg2
    from django.db import connection

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

    assert (busy.busy, busy.indexed_rows) == (True, 0)
    assert (free.busy, free.indexed_rows) == (False, 3)
    assert PredictionBatch.objects.get(pk=stored.batch_id).state == PredictionBatch.State.INDEXED


# ---------------------------------------------------------------- large batches in the media store


@pytest.fixture
def in_media(settings, tmp_path):
    """Every batch counts as large enough to keep its columns in the media store, one of its own."""
    settings.BATCH_COLUMNS_IN_MEDIA_FROM_BYTES = 0
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings


def _media_files(settings) -> set[str]:
    return {path.name for path in (settings.MEDIA_ROOT / "blobs").glob("*/*/*")}


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
