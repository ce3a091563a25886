"""Datasets from CSV or Parquet files. No Django here.

A dataset file has a column for every feature of the deployment (in any order) and, for a labelled set,
a `label` column. Both kinds go through pyarrow with typed columns, as prediction uploads do: a CSV is
streamed block by block as float64 features and text labels, so a 200 MB file becomes 8 bytes a number
rather than Python strings, and a Parquet file is judged by its footer before it is decoded
(monitoring/tablefiles.py). Errors name the line of a CSV (the row of a Parquet file) and the column, so
the person who exported the file can find the bad cell.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from monitoring import tablefiles
from monitoring.tablefiles import FileLimits

LABEL_COLUMN = "label"
# The UTF-8 check decodes this much at a time, so no decoded copy of the whole file is ever held.
UTF8_CHECK_BYTES = 1 << 20


class TableError(ValueError):
    """A file that cannot become a dataset. The message is user-facing; `line` is 1-based, the header is
    line 1 (None for a Parquet file, or a fault of the whole file). `too_large`: over a limit (413)."""

    def __init__(self, message: str, *, line: int | None = None, column: str = "", too_large: bool = False):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.too_large = too_large


@dataclass(frozen=True)
class Table:
    X: np.ndarray  # float64, n_rows × n_features, columns in the deployment's feature order
    y: np.ndarray | None  # labels as strings, or None without a label column


def read_dataset(data: bytes, *, filename: str, feature_names: list[str], limits: FileLimits) -> Table:
    """Features (in `feature_names` order) and optional labels from the bytes of a CSV or Parquet file
    (Parquet: a .parquet name, or the file's magic bytes).

    Raises TableError naming the line (or row) and column of the first problem.
    """
    try:
        if tablefiles.is_parquet(data, filename):
            return _parquet_dataset(data, feature_names, limits)
        return _csv_dataset(data, feature_names, limits)
    except tablefiles.FileTooLarge as exc:
        raise TableError(exc.message, too_large=True) from None
    except tablefiles.FileUnreadable as exc:
        raise TableError(exc.message) from None


def _check_names(names: list[str], feature_names: list[str], *, where: str) -> bool:
    """Whether the file has a label column; TableError if a feature is missing or a name unknown or twice."""
    line = 1 if where == "header" else None
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise TableError(f"The {where} names the column {name!r} twice.", line=line, column=name)
        seen.add(name)
    missing = [name for name in feature_names if name not in seen]
    if missing:
        raise TableError(f"The {where} lacks feature column(s): {', '.join(missing[:5])}.", line=line, column=missing[0])
    known = set(feature_names)
    unknown = [name for name in names if name not in known and name != LABEL_COLUMN]
    if unknown:
        raise TableError(
            f"The {where} has column(s) the deployment does not know: {', '.join(unknown[:5])}.", line=line, column=unknown[0]
        )
    return LABEL_COLUMN in seen


# ---------------------------------------------------------------- CSV

# pyarrow's serial reader names the row (the header is row 1) of a cell it cannot convert or a row too short.
_BAD_CELL = re.compile(r"In CSV column #(\d+): Row #(\d+): CSV conversion error to \w+: invalid value '(.*)'\Z", re.DOTALL)
_BAD_ROW = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")


def _csv_dataset(data: bytes, feature_names: list[str], limits: FileLimits) -> Table:
    if not data or data.isspace():
        raise TableError("The file is empty.")
    _check_utf8(data)
    header = [name.strip() for name in tablefiles.csv_names(data)]
    has_label = _check_names(header, feature_names, where="header")
    types = dict.fromkeys(feature_names, pa.float64()) | ({LABEL_COLUMN: pa.string()} if has_label else {})
    try:
        table = _csv_table(data, header, types, limits, threads=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        # Read again serially, only to learn which row is at fault: the threaded reader does not say.
        message = str(exc)
        try:
            _csv_table(data, header, types, limits, threads=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as serial:
            message = str(serial)
        raise _csv_problem(message, header) from None
    if not table.num_rows:
        raise TableError("The file has a header but no rows.", line=2)
    return _dataset(table, feature_names, has_label, place=lambda row: ("Line", row + 2))


def _csv_table(data: bytes, header: list[str], types: dict[str, pa.DataType], limits: FileLimits, *, threads: bool) -> pa.Table:
    """The file's rows under its stripped header names, block by block, refused as soon as they pass a limit."""
    read = pacsv.ReadOptions(column_names=header, skip_rows=1, use_threads=threads)
    # Only an empty cell is missing: "NA" or "null" in a feature is a bad cell, and "nan" a non-finite one.
    convert = pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False)
    row_bytes = 8 * len(types)
    batches: list[pa.RecordBatch] = []
    n_rows = 0
    reader = pacsv.open_csv(io.BytesIO(data), read_options=read, convert_options=convert)
    for batch in reader:
        n_rows += batch.num_rows
        if n_rows > limits.max_rows:
            raise tablefiles.FileTooLarge(f"The file has more than {limits.max_rows:,} rows; the limit is {limits.max_rows:,}.")
        if n_rows * row_bytes > limits.max_decoded_bytes:
            raise tablefiles.FileTooLarge(
                f"The file's columns take more than {limits.max_decoded_bytes:,} bytes once decoded, the limit."
            )
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=reader.schema)


def _check_utf8(data: bytes) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for start in range(0, len(data), UTF8_CHECK_BYTES):
        held = len(decoder.getstate()[0])  # the start of a character cut by the previous slice
        try:
            decoder.decode(view[start : start + UTF8_CHECK_BYTES], final=start + UTF8_CHECK_BYTES >= len(data))
        except UnicodeDecodeError as exc:
            raise TableError(f"The file is not UTF-8 text (bad byte at offset {start - held + exc.start}).") from None


def _csv_problem(message: str, header: list[str]) -> TableError:
    if match := _BAD_CELL.search(message):
        column, row, value = int(match[1]), int(match[2]), match[3]
        name = header[column] if column < len(header) else ""
        what = f"{value[:40]!r} is not a number"
        return TableError(f"Line {row}, column {name!r}: {what}.", line=row, column=name)
    if match := _BAD_ROW.search(message):
        row, got = int(match[1]), int(match[3])
        return TableError(f"Line {row} has {got} values; the header has {len(header)}.", line=row)
    return TableError(tablefiles.csv_error(message))


# ---------------------------------------------------------------- Parquet


def _parquet_dataset(data: bytes, feature_names: list[str], limits: FileLimits) -> Table:
    file = tablefiles.parquet_open(data)
    has_label = _check_names(tablefiles.parquet_names(file), feature_names, where="file")
    columns = [*feature_names, *([LABEL_COLUMN] if has_label else [])]
    table = tablefiles.parquet_read(data, file, columns=columns, limits=limits)
    if not table.num_rows:
        raise TableError("The file has no rows.")
    numbers = {name: _parquet_numbers(table.column(name), name) for name in feature_names}
    table = pa.table({**numbers, **({LABEL_COLUMN: table.column(LABEL_COLUMN)} if has_label else {})})
    return _dataset(table, feature_names, has_label, place=lambda row: ("Row", row + 1))


def _parquet_numbers(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    if pa.types.is_boolean(column.type):
        raise TableError(f"The column {name!r} holds true/false; a feature holds numbers.", column=name)
    try:  # integers, decimals, and text that reads as numbers
        return column.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TableError(f"The column {name!r} holds {column.type} that cannot be read as numbers: {exc}", column=name) from None


# ---------------------------------------------------------------- both


def _dataset(
    table: pa.Table, feature_names: list[str], has_label: bool, *, place: Callable[[int], tuple[str, int]]
) -> Table:
    """X and y from a table of float64 features and, with has_label, text labels; TableError at the first
    row holding an empty cell, a non-finite number or an empty label. `place(row)` names a 0-based row
    in the file's terms: ("Line", 3) for a CSV, ("Row", 2) for a Parquet file."""
    X = np.empty((table.num_rows, len(feature_names)), dtype=np.float64)
    faults: list[tuple[int, int, str]] = []  # (row, column position, what), the first of each column
    for j, name in enumerate(feature_names):
        column = table.column(name)
        X[:, j] = column.to_numpy()  # an empty cell is NaN here, and told apart below
        bad = np.flatnonzero(~np.isfinite(X[:, j]))
        if len(bad):
            row = int(bad[0])
            empty = not column[row].is_valid
            faults.append((row, j, "is empty" if empty else f"'{X[row, j]}' is not finite (NaN and infinity are rejected)"))
    y = None
    if has_label:
        labels = pc.utf8_trim_whitespace(table.column(LABEL_COLUMN).cast(pa.string()))
        empty = pc.or_kleene(pc.is_null(labels), pc.equal(labels, ""))
        if pc.any(empty).as_py():
            row = pc.index(empty, True).as_py()
            faults.append((row, len(feature_names), "the label is empty"))
        y = _label_strings(labels)
    if faults:
        row, j, what = min(faults)
        name = feature_names[j] if j < len(feature_names) else LABEL_COLUMN
        noun, number = place(row)
        raise TableError(f"{noun} {number}, column {name!r}: {what}.", line=number if noun == "Line" else None, column=name)
    return Table(X=X, y=y)


def _label_strings(labels: pa.ChunkedArray) -> np.ndarray:
    """The labels as a numpy string array, built from their few distinct values rather than a Python string
    per row."""
    encoded = labels.combine_chunks().dictionary_encode()
    values = np.asarray(encoded.dictionary.to_pylist(), dtype=str)
    return values[encoded.indices.to_numpy(zero_copy_only=False)]
