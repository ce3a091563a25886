"""Batches of production traffic as columns: validation and the binary layout. No Django here.

A batch arrives as JSON rows (the API) or as a table (a CSV or Parquet upload). Either way it becomes
`Columns`: numpy arrays, one per field, which are stored as raw little-endian bytes (see
monitoring.models.PredictionBatch) and read back with np.frombuffer, without parsing.

Validation is vectorised for the common case of a clean batch. When the fast path meets anything
unusual it hands over to a row-by-row pass whose only job is to name the row and field at fault.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import chain
from typing import Any

import numpy as np

from monitoring import callstats, tablefiles
from monitoring.tablefiles import FileLimits

MAX_ID_LENGTH = 128
MAX_ERRORS = 100  # a batch with thousands of bad rows answers with the first hundred, not a megabyte of errors
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Schema:
    feature_names: list[str]
    class_labels: list[str]
    allow_non_finite: bool = False

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


@dataclass(frozen=True)
class Columns:
    # The request ids as stored: UTF-8, joined by newlines (validation rejects an id holding one). A
    # million-row upload never becomes a million Python strings unless something asks for request_ids.
    joined_ids: bytes
    timestamps_us: np.ndarray  # int64, microseconds since the epoch, UTC
    features: np.ndarray  # float32, n × d
    predicted: np.ndarray  # int16, index into class_labels
    probabilities: np.ndarray | None  # float32, n × k; NaN rows where a row had none

    def __len__(self) -> int:
        return len(self.timestamps_us)

    @property
    def nbytes(self) -> int:
        extra = 0 if self.probabilities is None else self.probabilities.nbytes
        return len(self.joined_ids) + self.timestamps_us.nbytes + self.features.nbytes + self.predicted.nbytes + extra

    @cached_property
    def request_ids(self) -> list[str]:
        return decode_ids(self.joined_ids, len(self))

    def content_key(self) -> str:
        """A key naming this content, for batches sent without an Idempotency-Key: an identical resend is a retry."""
        digest = hashlib.sha256()
        digest.update(self.joined_ids)
        for array in (self.timestamps_us, self.features, self.predicted):
            digest.update(np.ascontiguousarray(array).tobytes())
        if self.probabilities is not None:
            digest.update(np.ascontiguousarray(self.probabilities).tobytes())
        return f"sha256:{digest.hexdigest()}"


class BatchInvalid(ValueError):
    """A batch that cannot be stored. `errors` are {"row", "field", "message"}; row is 0-based."""

    def __init__(self, message: str, errors: list[dict]):
        super().__init__(message)
        self.message = message
        self.errors = errors[:MAX_ERRORS]


def _error(row: int, field: str, message: str) -> dict:
    return {"row": row, "field": field, "message": message}


def _invalid(errors: list[dict], what: str = "row") -> BatchInvalid:
    return BatchInvalid(f"{len(errors)} {what}(s) are invalid; nothing was stored.", errors)


# ---------------------------------------------------------------- the binary layout


def encode_ids(request_ids: list[str]) -> bytes:
    return "\n".join(request_ids).encode()


def decode_ids(data: bytes, n_rows: int) -> list[str]:
    if n_rows == 0:
        return []
    ids = bytes(data).decode().split("\n")
    if len(ids) != n_rows:
        raise ValueError(f"a batch holds {len(ids)} ids for {n_rows} rows")
    return ids


# Every column of a large batch except its timestamps is kept in the media store as one uncompressed .npz
# (as datasets are), each member the little-endian array its bytea column would hold, the ids as the bytes
# of joined_ids. Timestamps stay in the row: counting rows since a time must not open a 100 MB file.
NPZ_MEMBERS = {"features": "<f4", "predicted": "<i2", "probabilities": "<f4", "request_ids": "u1"}


def columns_npz(columns: Columns) -> bytes:
    arrays = {
        "features": columns.features, "predicted": columns.predicted, "probabilities": columns.probabilities,
        "request_ids": np.frombuffer(columns.joined_ids, dtype=np.uint8),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.ascontiguousarray(a, dtype=NPZ_MEMBERS[name]) for name, a in arrays.items() if a is not None})
    return buffer.getvalue()


def stored_columns_from_npz(data: bytes, names: tuple[str, ...] = tuple(NPZ_MEMBERS)) -> dict[str, memoryview | None]:
    """{column: its raw bytes, as the bytea column would hold them (None: no probabilities)} of the named
    members of a columns_npz file; the others are not decompressed from the archive."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        stored = {name: archive[name] if name in archive.files else None for name in names}
    for name, array in stored.items():
        if array is not None and array.dtype != np.dtype(NPZ_MEMBERS[name]):
            raise ValueError(f"the stored column {name} is {array.dtype}, not {NPZ_MEMBERS[name]}")
    return {name: None if array is None else memoryview(array).cast("B") for name, array in stored.items()}


def to_timestamps_us(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype="datetime64[us]").astype(np.int64)


def as_datetime64(timestamps_us: np.ndarray) -> np.ndarray:
    return np.asarray(timestamps_us, dtype=np.int64).astype("datetime64[us]")


def us_to_datetime(value: int) -> datetime:
    return EPOCH + int(value) * ONE_US


def datetime_to_us(moment: datetime) -> int:
    return (moment - EPOCH) // ONE_US


# ---------------------------------------------------------------- JSON rows


def _timestamp_us(value: Any) -> int:
    """Microseconds since the epoch of an ISO 8601 string or a datetime; naive means UTC. Raises ValueError."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif not isinstance(value, datetime):
        raise ValueError("not a date-time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // ONE_US


def _timestamps_us(values: list) -> np.ndarray:
    """Microseconds since the epoch of ISO 8601 strings (naive means UTC), parsed by Arrow in C: about a
    seventh of datetime.fromisoformat per row. A batch Arrow cannot read whole (mixed naive and zoned
    strings, datetimes) goes through _timestamp_us row by row."""
    import pyarrow as pa

    try:
        parsed = _arrow_timestamps(pa.array(values, type=pa.string()))
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all strings
        parsed = None
    if parsed is not None and parsed.null_count == 0:
        return parsed.cast(pa.int64()).to_numpy()
    return np.fromiter((_timestamp_us(value) for value in values), dtype=np.int64, count=len(values))


def columns_from_rows(rows: list, schema: Schema) -> Columns:
    """Validate JSON rows ({"id", "timestamp", "features", "predicted_label", "probabilities"?}) into columns.

    All or nothing: raises BatchInvalid naming every bad row and field (up to MAX_ERRORS).
    """
    try:
        columns = _fast_columns(rows, schema)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        columns = None
    return columns if columns is not None else _careful_columns(rows, schema)


def _fast_columns(rows: list, schema: Schema) -> Columns | None:
    """The clean-batch path: a handful of C-speed passes. None (or an exception) means "look closer"."""
    n = len(rows)
    if not all(type(row) is dict for row in rows):
        return None
    ids = [row["id"] for row in rows]
    if set(map(type, ids)) != {str} or len(set(ids)) != n:
        return None
    joined = "\n".join(ids)
    if min(map(len, ids)) == 0 or max(map(len, ids)) > MAX_ID_LENGTH or joined.count("\n") != n - 1:
        return None
    timestamps = _timestamps_us([row["timestamp"] for row in rows])
    index = {label: i for i, label in enumerate(schema.class_labels)}
    predicted = np.fromiter((index[row["predicted_label"]] for row in rows), dtype=np.int16, count=n)
    features = [row["features"] for row in rows]
    if set(map(type, features)) != {list}:
        return None
    # bool is an int to Python and to numpy; a JSON true in a feature is a client bug, so it is not let through.
    if not set(map(type, chain.from_iterable(features))) <= {float, int}:
        return None
    X = np.array(features, dtype=np.float64)
    if X.shape != (n, schema.n_features):
        return None
    if not _finite_ok(X, schema):
        return None
    probabilities = _fast_probabilities(rows, schema)
    if probabilities is False:
        return None
    return Columns(joined.encode(), timestamps, X.astype(np.float32), predicted, probabilities)


def _finite_ok(X: np.ndarray, schema: Schema) -> bool:
    finite = np.isfinite(X)
    if not schema.allow_non_finite and not finite.all():
        return False
    # A finite float64 beyond float32's range would be stored as infinity: refuse it rather than change it.
    return not np.any(np.abs(X[finite]) > FLOAT32_MAX)


def _fast_probabilities(rows: list, schema: Schema):
    raw = [row.get("probabilities") for row in rows]
    if all(p is None for p in raw):
        return None
    if any(p is None for p in raw):
        return False  # mixed: the careful pass fills NaN rows
    if set(map(type, raw)) != {list} or not set(map(type, chain.from_iterable(raw))) <= {float, int}:
        return False
    P = np.array(raw, dtype=np.float64)
    if P.shape != (len(rows), len(schema.class_labels)) or not (np.isfinite(P).all() and (P >= 0).all() and (P <= 1).all()):
        return False
    return P.astype(np.float32)


def _careful_columns(rows: list, schema: Schema) -> Columns:
    """Row by row: name every fault; build the columns when there is none."""
    if not isinstance(rows, list):
        raise BatchInvalid("The batch must be a list of predictions.", [])
    errors: list[dict] = []
    ids: list[str] = []
    timestamps: list[int] = []
    features: list[list[float]] = []
    predicted: list[int] = []
    probabilities: list[list[float] | None] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        parsed = _careful_row(i, row, schema, errors)
        if parsed is None:
            continue
        request_id = parsed[0]
        if request_id in seen:
            errors.append(_error(i, "id", f"duplicate id {request_id!r} (also row {seen[request_id]})"))
            continue
        seen[request_id] = i
        ids.append(request_id)
        timestamps.append(parsed[1])
        features.append(parsed[2])
        predicted.append(parsed[3])
        probabilities.append(parsed[4])
    if errors:
        raise _invalid(errors)
    P = None
    if any(p is not None for p in probabilities):
        P = np.full((len(rows), len(schema.class_labels)), np.nan, dtype=np.float32)
        for i, p in enumerate(probabilities):
            if p is not None:
                P[i] = p
    return Columns(
        encode_ids(ids),
        np.asarray(timestamps, dtype=np.int64),
        np.asarray(features, dtype=np.float32).reshape(len(ids), schema.n_features),
        np.asarray(predicted, dtype=np.int16),
        P,
    )


def _careful_row(i: int, row: Any, schema: Schema, errors: list[dict]) -> tuple | None:
    if not isinstance(row, dict):
        errors.append(_error(i, "", "must be an object"))
        return None
    before = len(errors)
    request_id = _careful_id(i, row.get("id"), errors)
    try:
        timestamp = _timestamp_us(row.get("timestamp"))
    except (TypeError, ValueError, OverflowError):
        errors.append(_error(i, "timestamp", "must be an ISO 8601 date-time"))
        timestamp = None
    features = _careful_features(i, row.get("features"), schema, errors)
    label = row.get("predicted_label")
    if label is None or isinstance(label, (dict, list)) or str(label) not in schema.class_labels:
        errors.append(_error(i, "predicted_label", f"must be one of {schema.class_labels}"))
    probabilities = _careful_probabilities(i, row.get("probabilities"), schema, errors)
    if len(errors) > before:
        return None
    return request_id, timestamp, features, schema.class_labels.index(str(label)), probabilities


def _careful_id(i: int, value: Any, errors: list[dict]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        errors.append(_error(i, "id", f"must be a string, got {type(value).__name__}"))
        return None
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH or "\n" in text:
        errors.append(_error(i, "id", f"must be a non-empty string of at most {MAX_ID_LENGTH} characters, on one line"))
        return None
    return text


def _careful_features(i: int, raw: Any, schema: Schema, errors: list[dict]) -> list[float] | None:
    names = schema.feature_names
    if isinstance(raw, dict):
        missing = [name for name in names if name not in raw]
        extra = [str(key) for key in raw if key not in set(names)]
        if missing:
            errors.append(_error(i, "features", f"missing feature(s): {', '.join(missing[:5])}"))
            return None
        if extra:
            errors.append(_error(i, "features", f"unknown feature(s): {', '.join(extra[:5])}"))
            return None
        values = [raw[name] for name in names]
    elif isinstance(raw, list):
        if len(raw) != len(names):
            errors.append(_error(i, "features", f"expected {len(names)} values, got {len(raw)}"))
            return None
        values = raw
    else:
        errors.append(_error(i, "features", "must be an object keyed by feature name or a list"))
        return None
    parsed = []
    for name, value in zip(names, values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(_error(i, f"features.{name}", f"must be a number, got {type(value).__name__}"))
            return None
        if not math.isfinite(value) and not schema.allow_non_finite:
            errors.append(_error(i, f"features.{name}", "must be finite (NaN and infinity are rejected)"))
            return None
        if math.isfinite(value) and abs(value) > FLOAT32_MAX:
            errors.append(_error(i, f"features.{name}", "is beyond the float32 range"))
            return None
        parsed.append(float(value))
    return parsed


def _careful_probabilities(i: int, raw: Any, schema: Schema, errors: list[dict]) -> list[float] | None:
    if raw is None:
        return None
    k = len(schema.class_labels)
    if (
        not isinstance(raw, list)
        or len(raw) != k
        or not all(isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and 0 <= p <= 1 for p in raw)
    ):
        errors.append(_error(i, "probabilities", f"must be {k} finite numbers in [0, 1]"))
        return None
    return [float(p) for p in raw]


# ---------------------------------------------------------------- tables (CSV and Parquet uploads)

ID_COLUMN = "id"
TIMESTAMP_COLUMN = "timestamp"
PREDICTED_COLUMN = "predicted_label"
PROBABILITY_PREFIX = "proba_"
LABEL_COLUMN = "label"  # of a labels file


def columns_from_table(table, schema: Schema) -> Columns:
    """Validate a pyarrow Table with columns id, timestamp, predicted_label, every feature and optionally
    proba_<class> for every class. Errors name the 0-based data row and the column."""
    import pyarrow as pa

    try:
        return _columns_from_table(table, schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # e.g. a binary column that is not UTF-8
        raise BatchInvalid(f"The file has a column that cannot be read as expected: {exc}", []) from None


def table_columns(names: list[str], schema: Schema) -> list[str]:
    """The columns of a predictions file, from the names it has: id, timestamp, predicted_label, every feature
    and, if any, proba_<class> for every class. BatchInvalid if one is missing or a name is unknown, so a
    file is refused by its header or footer before anything in it is decoded."""
    present = set(names)
    required = [ID_COLUMN, TIMESTAMP_COLUMN, PREDICTED_COLUMN, *schema.feature_names]
    missing = [name for name in required if name not in present]
    if missing:
        raise BatchInvalid(f"The file lacks column(s): {', '.join(missing[:5])}.", [_error(-1, missing[0], "missing column")])
    proba_columns = [f"{PROBABILITY_PREFIX}{label}" for label in schema.class_labels]
    has_proba = any(name in present for name in proba_columns)
    known = set(required) | (set(proba_columns) if has_proba else set())
    unknown = sorted(present - known)
    if unknown or (has_proba and not all(name in present for name in proba_columns)):
        what = unknown or [name for name in proba_columns if name not in present]
        raise BatchInvalid(
            f"The file has unexpected or incomplete column(s): {', '.join(what[:5])}.", [_error(-1, what[0], "unexpected column")]
        )
    return required + (proba_columns if has_proba else [])


def label_columns(names: list[str]) -> list[str]:
    """The columns of a labels file (id and label, whatever else it holds)."""
    missing = [name for name in (ID_COLUMN, LABEL_COLUMN) if name not in names]
    if missing:
        raise BatchInvalid(f"The file lacks column(s): {', '.join(missing)}.", [])
    return [ID_COLUMN, LABEL_COLUMN]


def _columns_from_table(table, schema: Schema) -> Columns:
    columns = table_columns(table.column_names, schema)
    proba_columns = columns[3 + schema.n_features:]
    has_proba = bool(proba_columns)
    n = table.num_rows
    if n == 0:
        raise BatchInvalid("The file has no rows.", [])

    joined_ids = _table_ids(table.column(ID_COLUMN))
    timestamps = _table_timestamps(table.column(TIMESTAMP_COLUMN))
    predicted = _table_labels(table.column(PREDICTED_COLUMN), schema)
    errors: list[dict] = []
    features = []
    for name in schema.feature_names:
        values = _numeric(table.column(name), name, errors)
        if values is not None and not schema.allow_non_finite and not np.isfinite(values).all():
            bad = np.flatnonzero(~np.isfinite(values))
            errors += [_error(int(r), name, "must be finite (NaN and infinity are rejected)") for r in bad[:MAX_ERRORS]]
        features.append(values)
    probabilities = []
    for name in proba_columns if has_proba else []:
        values = _numeric(table.column(name), name, errors)
        if values is not None and not ((values >= 0) & (values <= 1)).all():
            bad = np.flatnonzero(~((values >= 0) & (values <= 1)))
            errors += [_error(int(r), name, "must be a number in [0, 1]") for r in bad[:MAX_ERRORS]]
        probabilities.append(values)
    if errors:
        raise _invalid(sorted(errors, key=lambda e: e["row"]))
    return Columns(joined_ids, timestamps, _interleave(features), predicted, _interleave(probabilities) if has_proba else None)


# Rows per block when columns are interleaved into a row-major array: 16,384 rows × 20 float32 features is
# 1.3 MB, which stays in cache while each column's slice is written into it. Column by column over the
# whole array, every write lands on another cache line: 0.12 s for 1M × 20 against 0.04 s in blocks.
INTERLEAVE_ROWS = 16_384


def _interleave(columns: list[np.ndarray]) -> np.ndarray:
    """float32 n × len(columns), row-major, from one array per column."""
    n = len(columns[0]) if columns else 0
    out = np.empty((n, len(columns)), dtype=np.float32)
    for start in range(0, n, INTERLEAVE_ROWS):
        block = out[start : start + INTERLEAVE_ROWS]
        for j, values in enumerate(columns):
            block[:, j] = values[start : start + INTERLEAVE_ROWS]
    return out


def _table_ids(column) -> bytes:
    """The id column checked and joined (Columns.joined_ids), in Arrow's C++ kernels: as Python strings in a
    set, a million ids took 0.45 s, a fifth of storing the upload. The rows at fault are found in Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = column.cast(pa.string()).combine_chunks()
    n = len(ids)
    if ids.null_count:
        raise _invalid([_error(int(pc.index(pc.is_null(ids), True).as_py()), ID_COLUMN, "is empty")])
    lengths = pc.utf8_length(ids).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero((lengths == 0) | (lengths > MAX_ID_LENGTH))
    if len(bad):
        raise _invalid([_error(int(r), ID_COLUMN, f"must be 1 to {MAX_ID_LENGTH} characters") for r in bad])
    if pc.any(pc.match_substring(ids, "\n")).as_py():
        raise _invalid([_error(r, ID_COLUMN, "must be on one line") for r, v in enumerate(ids.to_pylist()) if "\n" in v])
    if len(ids.unique()) != n:
        first: dict[str, int] = {}
        errors = []
        for row, request_id in enumerate(ids.to_pylist()):
            if request_id in first:
                errors.append(_error(row, ID_COLUMN, f"duplicate id {request_id!r} (also row {first[request_id]})"))
            first.setdefault(request_id, row)
        raise _invalid(errors)
    # One list holding every id, joined with newlines by Arrow: the bytes encode_ids would make.
    whole = pa.ListArray.from_arrays(pa.array([0, n], type=pa.int32()), ids)
    return pc.binary_join(whole, "\n")[0].as_buffer().to_pybytes()


def _numeric(column, name: str, errors: list[dict]) -> np.ndarray | None:
    import pyarrow as pa

    if column.null_count:
        bad = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
        errors += [_error(int(r), name, "is empty") for r in bad[:MAX_ERRORS]]
        return None
    if pa.types.is_boolean(column.type):  # as in the JSON API: true is a client bug, not the number 1
        errors.append(_error(-1, name, "must hold numbers, not true/false"))
        return None
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        try:  # a decimal column, or text that Arrow reads as numbers
            values = column.cast(pa.float64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = _numbers_from_text(column, name, errors)
    else:
        values = column.to_numpy()
    if values is not None and values.dtype == np.float64:  # float32 and integer columns always fit
        over = np.flatnonzero(np.isfinite(values) & (np.abs(values) > FLOAT32_MAX))
        errors += [_error(int(r), name, "is beyond the float32 range") for r in over[:MAX_ERRORS]]
    return values


def _numbers_from_text(column, name: str, errors: list[dict]) -> np.ndarray | None:
    """A text column cell by cell, as Python reads numbers; None with errors naming the cells that are not."""
    import pyarrow as pa

    values = []
    before = len(errors)
    for r, value in enumerate(column.cast(pa.string()).to_pylist()):
        try:
            values.append(float(value))
        except (TypeError, ValueError):
            errors.append(_error(r, name, f"{str(value)[:40]!r} is not a number"))
            if len(errors) - before >= MAX_ERRORS:
                break
    return None if len(errors) > before else np.asarray(values, dtype=np.float64)


def _table_timestamps(column) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_timestamp(column.type):
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise _invalid([_error(row, TIMESTAMP_COLUMN, "is empty")])
        # Naive means UTC, as in the JSON API.
        return column.cast(pa.timestamp("us", tz=column.type.tz)).to_numpy().astype("datetime64[us]").astype(np.int64)
    text = column.cast(pa.string())
    # Only a mix, or a value Arrow cannot read, takes the row-by-row pass below (4 s per million rows).
    parsed = _arrow_timestamps(text)
    if parsed is None or parsed.null_count:
        errors = []
        for r, value in enumerate(text.to_pylist()):
            try:
                _timestamp_us(value)
            except (TypeError, ValueError, OverflowError):
                errors.append(_error(r, TIMESTAMP_COLUMN, "must be an ISO 8601 date-time"))
                if len(errors) >= MAX_ERRORS:
                    break
        if errors:
            raise _invalid(errors)
        return np.fromiter((_timestamp_us(v) for v in text.to_pylist()), dtype=np.int64, count=len(text))
    return parsed.to_numpy().astype("datetime64[us]").astype(np.int64)


def _arrow_timestamps(text):
    """ISO 8601 strings (an Arrow string array) cast in C: all with a zone offset, or all naive (naive means
    UTC: the same microseconds). None when Arrow cannot read them all one way."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            return pc.cast(text, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def _table_labels(column, schema: Schema) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    text = column.cast(pa.string())
    codes = pc.index_in(text, value_set=pa.array(schema.class_labels, type=pa.string()))
    if codes.null_count:
        bad = np.flatnonzero(codes.is_null().to_numpy(zero_copy_only=False))
        raise _invalid(
            [_error(int(r), PREDICTED_COLUMN, f"must be one of {schema.class_labels}") for r in bad[:MAX_ERRORS]]
        )
    return codes.to_numpy().astype(np.int16)


def read_table(data: bytes, *, filename: str, choose: Callable[[list[str]], list[str]], limits: FileLimits):
    """A pyarrow Table of the columns `choose` picks from a .csv or .parquet file's names (table_columns,
    label_columns), read within `limits` (see monitoring/tablefiles.py). Raises BatchInvalid on a file that
    cannot be read or whose names `choose` refuses, and FileTooLarge over a limit."""
    import pyarrow as pa

    try:
        if tablefiles.is_parquet(data, filename):
            file = tablefiles.parquet_open(data)
            return tablefiles.parquet_read(data, file, columns=choose(tablefiles.parquet_names(file)), limits=limits)
        columns = choose(tablefiles.csv_names(data))
        # Ids stay text even when they look like numbers; timestamps are parsed by us (naive means UTC).
        text = {name: pa.string() for name in (ID_COLUMN, TIMESTAMP_COLUMN, PREDICTED_COLUMN) if name in columns}
        return tablefiles.csv_read(data, columns=columns, column_types=text, limits=limits)
    except tablefiles.FileUnreadable as exc:
        raise BatchInvalid(exc.message, []) from None


# ---------------------------------------------------------------- the columnar batch (the serving client's format)

# A prediction batch as an uncompressed .npz (np.savez): one member per column, so neither end formats or parses
# a number. Members: `ids` (uint8: the UTF-8 ids joined by "\n", as stored), `timestamp_us` (int64 µs since the
# epoch, UTC), `features` (float32 or float64, n × d), `predicted_label` (integers, read as their decimal text,
# or unicode text: one of the class labels) and, optionally, `probabilities` (float32/64, n × k). Optionally too,
# the client's calls (monitoring/callstats.py): `latency_us` (numbers, one per call timed in this batch), `calls`
# and `errors` (one integer each). A report of failed calls alone has these and no row members.
NPZ_BATCH_TYPE = "application/x-npz"
NPZ_BATCH_MEMBERS = ("ids", "timestamp_us", "features", "predicted_label", "probabilities", "latency_us", "calls", "errors")
NPZ_ROW_MEMBERS = NPZ_BATCH_MEMBERS[:5]
NPZ_SCALAR_MEMBERS = ("calls", "errors")


class BatchTooLarge(BatchInvalid):
    """More rows than the batch may hold (a 413, not a 422)."""


def _npz_members(data: bytes, *, max_rows: int) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed .npz, each header checked before its data is read: stored members only (so
    nothing inflates past the body's size, already capped), known names, no object arrays, at most max_rows."""
    import zipfile

    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                if name not in NPZ_BATCH_MEMBERS or name in arrays:
                    raise BatchInvalid(f"Unexpected member {info.filename!r}: the members are {', '.join(NPZ_BATCH_MEMBERS)}.",
                                       [_error(-1, name, "unexpected member")])
                if info.compress_type != zipfile.ZIP_STORED:
                    raise BatchInvalid("Members must be stored uncompressed (np.savez, not np.savez_compressed).",
                                       [_error(-1, name, "compressed")])
                with archive.open(info) as member:
                    major, _ = np.lib.format.read_magic(member)
                    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = read_header(member)
                    if shape and shape[0] > max_rows and name != "ids":
                        raise BatchTooLarge(f"The batch has {shape[0]} rows; the limit is {max_rows}.", [])
                    scalar_ok = name in NPZ_SCALAR_MEMBERS and shape == ()
                    if dtype.hasobject or fortran or (len(shape) not in (1, 2) and not scalar_ok):
                        raise BatchInvalid(f"Member {name!r} is {dtype} {shape}: a C-order 1- or 2-d array of numbers or "
                                           "text.", [_error(-1, name, "unexpected shape or type")])
                    count = int(np.prod(shape))
                    raw = member.read(count * dtype.itemsize)
                    if len(raw) != count * dtype.itemsize:
                        raise BatchInvalid(f"Member {name!r} is shorter than its header says.", [_error(-1, name, "truncated")])
                    arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        if isinstance(exc, BatchInvalid):
            raise
        raise BatchInvalid(f"The body is not a readable uncompressed .npz: {exc}", []) from None
    return arrays


def call_report(**fields: Any) -> callstats.CallReport | None:
    """callstats.call_report, its refusal as a BatchInvalid naming the field."""
    try:
        return callstats.call_report(**fields)
    except callstats.CallReportInvalid as exc:
        raise BatchInvalid(f"{exc.message}; nothing was stored.", [_error(-1, exc.field, exc.message)]) from None


@dataclass(frozen=True)
class NpzBatch:
    columns: Columns | None  # None: a report of failed calls without rows
    calls: callstats.CallReport | None  # None: the client reported no calls (an older client)


def batch_from_npz(data: bytes, schema: Schema, *, max_rows: int) -> NpzBatch:
    """A columnar batch's rows (as columns_from_npz) and its calls, both validated before anything is stored."""
    arrays = _npz_members(data, max_rows=max_rows)
    report = call_report(latency_us=arrays.get("latency_us"), calls=arrays.get("calls"), errors=arrays.get("errors"))
    if report is not None and not any(name in arrays for name in NPZ_ROW_MEMBERS):
        if report.calls == 0:
            raise BatchInvalid("A report without rows must count at least one call.", [_error(-1, "calls", "must be at least 1")])
        return NpzBatch(None, report)
    return NpzBatch(_columns_from_arrays(arrays, schema), report)


def columns_from_npz(data: bytes, schema: Schema, *, max_rows: int) -> Columns:
    """Validate a columnar batch (NPZ_BATCH_MEMBERS) into Columns, with the same rules as JSON rows. All or nothing;
    errors name the row (0-based) and field, or row -1 for a whole member."""
    return _columns_from_arrays(_npz_members(data, max_rows=max_rows), schema)


def _columns_from_arrays(arrays: dict[str, np.ndarray], schema: Schema) -> Columns:
    missing = [name for name in NPZ_BATCH_MEMBERS[:4] if name not in arrays]
    if missing:
        raise BatchInvalid(f"The batch lacks member(s): {', '.join(missing)}.", [_error(-1, missing[0], "missing member")])
    X, predicted_raw, P = arrays["features"], arrays["predicted_label"], arrays.get("probabilities")
    n = len(X)
    if n == 0:
        raise BatchInvalid("The batch has no rows.", [])
    errors: list[dict] = []

    def member(name: str, ok: bool, message: str) -> None:
        if not ok:
            errors.append(_error(-1, name, message))

    member("features", X.ndim == 2 and X.shape[1] == schema.n_features and X.dtype.kind == "f",
           f"must be float, {n} × {schema.n_features}")
    stamps = arrays["timestamp_us"]
    member("timestamp_us", stamps.shape == (n,) and stamps.dtype.kind in "iu", f"must be {n} integers")
    member("predicted_label", predicted_raw.shape == (n,) and predicted_raw.dtype.kind in "iuU", f"must be {n} integers or texts")
    if P is not None:
        member("probabilities", P.ndim == 2 and P.shape == (n, len(schema.class_labels)) and P.dtype.kind == "f",
               f"must be float, {n} × {len(schema.class_labels)}")
    member("ids", arrays["ids"].ndim == 1 and arrays["ids"].dtype == np.uint8, "must be uint8 (UTF-8 ids joined by newlines)")
    if errors:
        raise _invalid(errors, "member")

    joined = arrays["ids"].tobytes()
    try:
        ids = joined.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise BatchInvalid("The ids are not UTF-8.", [_error(-1, "ids", "not UTF-8")]) from None
    if len(ids) != n:
        raise BatchInvalid(f"{len(ids)} ids for {n} rows.", [_error(-1, "ids", f"expected {n} ids")])
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
    errors += [_error(int(r), "id", f"must be 1 to {MAX_ID_LENGTH} characters")
               for r in np.flatnonzero((lengths == 0) | (lengths > MAX_ID_LENGTH))[:MAX_ERRORS]]
    if len(set(ids)) != n:
        seen: set[str] = set()
        for r, request_id in enumerate(ids):
            if request_id in seen:
                errors.append(_error(r, "id", "duplicate id in this batch"))
            seen.add(request_id)

    if not schema.allow_non_finite and not (clean := np.isfinite(X).all(axis=1)).all():
        errors += [_error(int(r), "features", "must be finite (NaN and infinity are rejected)")
                   for r in np.flatnonzero(~clean)[:MAX_ERRORS]]
    if X.dtype != np.float32:  # a finite float64 beyond float32's range would be stored as infinity: refused
        with np.errstate(invalid="ignore"):
            too_big = (np.abs(X) > FLOAT32_MAX) & np.isfinite(X)
        errors += [_error(int(r), "features", "beyond float32's range") for r in np.flatnonzero(too_big.any(axis=1))[:MAX_ERRORS]]
    values, inverse = np.unique(predicted_raw, return_inverse=True)  # integers are matched by their decimal text
    index = {label: i for i, label in enumerate(schema.class_labels)}
    codes = np.array([index.get(str(v), -1) for v in values], dtype=np.int16)[inverse]
    errors += [_error(int(r), "predicted_label", f"must be one of {schema.class_labels}")
               for r in np.flatnonzero(codes < 0)[:MAX_ERRORS]]
    if P is not None:
        bad = ~((P >= 0) & (P <= 1)).all(axis=1)  # NaN fails both comparisons
        errors += [_error(int(r), "probabilities", "must be numbers in [0, 1]") for r in np.flatnonzero(bad)[:MAX_ERRORS]]
    if errors:
        raise _invalid(sorted(errors, key=lambda e: e["row"]))
    return Columns(
        joined, stamps.astype(np.int64, copy=False), X.astype(np.float32, copy=False), codes,
        None if P is None else P.astype(np.float32, copy=False),
    )
