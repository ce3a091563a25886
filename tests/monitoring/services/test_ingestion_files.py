"""services/ingestion.py: predictions uploaded as CSV or Parquet files."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from monitoring import services
from monitoring.models import PredictionBatch
from monitoring.services import ValidationFailed
from tests.conftest import CLASSES, FEATURES, breast_cancer_split
from tests.monitoring.services.ingestion_helpers import T0, _csv, _parquet, _table, window

# ---------------------------------------------------------------- files


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
