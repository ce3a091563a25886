"""Reading uploaded CSV and Parquet files within limits, before they expand. No Django here.

An upload's bytes are capped by the request, but not what they decode to. A Parquet page of one value
repeated by run-length encoding, or a dictionary of one long string, decodes to gigabytes from a file of
kilobytes; a CSV of short rows becomes eight bytes per cell. So a Parquet file is judged by its footer
first (rows, uncompressed size, the fixed-width size of the columns asked for), its text columns are read
still dictionary-encoded and measured before they are expanded, and a CSV's rows are counted before it is
parsed whole. Only the columns the caller names are decoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


@dataclass(frozen=True)
class FileLimits:
    max_rows: int
    # What the columns read may take in memory once decoded, and what their pages may take uncompressed.
    max_decoded_bytes: int


class FileTooLarge(ValueError):
    """A file over a limit. The message is user-facing and says which limit."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class FileUnreadable(ValueError):
    """A file that is not the CSV or Parquet it claims to be. The message is user-facing."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def is_parquet(data: bytes, filename: str) -> bool:
    return filename.lower().endswith(".parquet") or data[:4] == b"PAR1"


def too_many_rows(n_rows: int, limit: int) -> FileTooLarge:
    return FileTooLarge(f"The file has {n_rows:,} rows; the limit is {limit:,}.")


# ---------------------------------------------------------------- Parquet


def parquet_open(data: bytes) -> pq.ParquetFile:
    """The file with its footer parsed (pyarrow caps the footer's own thrift sizes); nothing decoded yet."""
    try:
        return pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise FileUnreadable(f"The file cannot be read as Parquet: {exc}") from None


def parquet_names(file: pq.ParquetFile) -> list[str]:
    return list(file.schema_arrow.names)


def parquet_read(data: bytes, file: pq.ParquetFile, *, columns: list[str], limits: FileLimits) -> pa.Table:
    """The named columns, decoded, once the footer and the measured text columns fit the limits."""
    metadata = file.metadata
    if metadata.num_rows > limits.max_rows:
        raise too_many_rows(metadata.num_rows, limits.max_rows)
    _check_unique(parquet_names(file), columns)
    fields = [file.schema_arrow.field(name) for name in columns]
    widths = {field.name: _fixed_width(field.type) for field in fields}
    for field in fields:
        if widths[field.name] is None and not _is_text(field.type):
            raise FileUnreadable(f"The column {field.name!r} holds {field.type}; only numbers, text and dates are read.")
    uncompressed = _uncompressed_bytes(metadata, set(columns))
    if uncompressed > limits.max_decoded_bytes:
        raise FileTooLarge(f"The file's columns take {uncompressed:,} bytes uncompressed; the limit is "
                           f"{limits.max_decoded_bytes:,}.")
    fixed = metadata.num_rows * sum(width for width in widths.values() if width is not None)
    _check_decoded(fixed, limits)
    # Text is read as a dictionary (one copy of each distinct value, and four bytes a row), so a value repeated
    # a million times is measured before it is allocated a million times.
    text = [name for name, width in widths.items() if width is None]
    # Decoded in batches, measuring as it goes: the footer's sizes are the file's own word, so a file that
    # understates them is stopped after the batch that crosses the limit, not after decoding everything.
    batches, text_bytes = [], 0
    try:
        reader = pq.ParquetFile(pa.BufferReader(data), read_dictionary=text)
        for batch in reader.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            text_bytes += sum(_dense_bytes(pa.chunked_array([batch.column(name)])) for name in text)
            _check_decoded(fixed + text_bytes, limits)
            batches.append(batch)
        table = pa.Table.from_batches(batches) if batches else reader.read(columns=columns)  # no rows: no batch
    except (pa.ArrowException, OSError) as exc:
        raise FileUnreadable(f"The file cannot be read as Parquet: {exc}") from None
    return pa.table({name: _decoded(table.column(name)) for name in columns})


# 65,536 rows: a batch of 20 float features is 10 MB, small beside the limits, and few enough batches that
# their overhead is negligible on a million-row file.
PARQUET_BATCH_ROWS = 65_536


def _check_unique(names: list[str], wanted: list[str]) -> None:
    """A name the file holds twice would be read from whichever column pyarrow finds first."""
    for name in wanted:
        if names.count(name) > 1:
            raise FileUnreadable(f"The file names the column {name!r} twice.")


def _value_type(type_: pa.DataType) -> pa.DataType:
    return type_.value_type if pa.types.is_dictionary(type_) else type_


def _fixed_width(type_: pa.DataType) -> float | None:
    """Bytes per value of a fixed-width type once decoded (a bool is an eighth); None for any other type."""
    type_ = _value_type(type_)
    if pa.types.is_nested(type_) or pa.types.is_null(type_):
        return None
    try:
        return type_.bit_width / 8
    except ValueError:  # "Non-fixed width type"
        return None


def _is_text(type_: pa.DataType) -> bool:
    type_ = _value_type(type_)
    return any(check(type_) for check in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                                          pa.types.is_large_binary, pa.types.is_string_view, pa.types.is_binary_view))


def _uncompressed_bytes(metadata: pq.FileMetaData, names: set[str]) -> int:
    total = 0
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            # The columns read are flat (checked above), so a leaf's path is its column's name.
            if column.path_in_schema in names:
                total += column.total_uncompressed_size
    return total


def _dense_bytes(column: pa.ChunkedArray) -> int:
    """What a dictionary-encoded column takes expanded (each row's value length, plus its offset), summed
    without expanding it."""
    total = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            lengths = pc.take(pc.binary_length(chunk.dictionary), chunk.indices)
            total += (pc.sum(lengths).as_py() or 0) + 4 * len(chunk)
        else:
            total += chunk.nbytes
    return total


def _check_decoded(n_bytes: float, limits: FileLimits) -> None:
    if n_bytes > limits.max_decoded_bytes:
        raise FileTooLarge(f"The file's columns take {int(n_bytes):,} bytes once decoded; the limit is "
                           f"{limits.max_decoded_bytes:,}.")


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


# ---------------------------------------------------------------- CSV


def csv_names(data: bytes) -> list[str]:
    """The header's column names. pyarrow parses the first block only (skipping a UTF-8 byte-order mark), and
    rows of the wrong length are left for the real read to report."""
    options = pacsv.ParseOptions(invalid_row_handler=lambda row: "skip")
    try:
        return list(pacsv.open_csv(io.BytesIO(data), parse_options=options).schema.names)
    except (pa.ArrowException, OSError) as exc:
        raise FileUnreadable(csv_error(exc)) from None


def csv_check_rows(data: bytes, *, limit: int) -> None:
    """Refuse a CSV of more than `limit` data rows without holding its rows.

    Every row but the last ends in a newline, so a file with at most `limit` newlines has at most `limit`
    rows after its header: one memchr pass (about 50 ms for 512 MB) clears the common case. A file with
    more newlines (a quoted cell may hold some) is parsed to count its rows, one block at a time, reading
    a single column as text, and refused as soon as the count passes the limit.
    """
    if data.count(b"\n") <= limit:
        return
    first = csv_names(data)[:1]
    options = pacsv.ConvertOptions(include_columns=first, column_types=dict.fromkeys(first, pa.string()))
    n_rows = 0
    try:
        for batch in pacsv.open_csv(io.BytesIO(data), convert_options=options):
            n_rows += batch.num_rows
            if n_rows > limit:
                raise FileTooLarge(f"The file has more than {limit:,} rows; the limit is {limit:,}.")
    except (pa.ArrowException, OSError) as exc:
        raise FileUnreadable(csv_error(exc)) from None


def csv_read(data: bytes, *, columns: list[str], column_types: dict[str, pa.DataType], limits: FileLimits) -> pa.Table:
    """The named columns of a CSV whose row count fits, parsed by pyarrow on every core. Types it is not told
    are inferred from the whole file; a CSV decodes to about its own size plus eight bytes a number, so the
    row count and the request's byte cap bound it."""
    _check_unique(csv_names(data), columns)
    csv_check_rows(data, limit=limits.max_rows)
    options = pacsv.ConvertOptions(include_columns=columns, column_types=column_types)
    try:
        table = pacsv.read_csv(io.BytesIO(data), convert_options=options)
    except (pa.ArrowException, OSError) as exc:
        raise FileUnreadable(csv_error(exc)) from None
    if table.num_rows > limits.max_rows:  # at the limit exactly, without a final newline
        raise too_many_rows(table.num_rows, limits.max_rows)
    return table


def csv_error(exc: Exception | str) -> str:
    return f"The file cannot be read as CSV: {exc}"
