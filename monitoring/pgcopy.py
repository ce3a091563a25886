"""Postgres COPY in binary format, read without per-value parsing and written from numpy. No Django here.

`COPY ... TO STDOUT (FORMAT binary)` sends bytea as raw bytes (a SELECT sends them hex-encoded, twice
the size, then unescaped in C), and fixed-width integer columns as big-endian words that numpy reads
in one np.frombuffer call. Format: https://www.postgresql.org/docs/current/sql-copy.html (Binary Format).
"""

from __future__ import annotations

import io
import struct

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = struct.Struct("!ii")
_SHORT = struct.Struct("!h")
_INT = struct.Struct("!i")


def _body_start(data: bytes | memoryview) -> int:
    if bytes(data[: len(SIGNATURE)]) != SIGNATURE:
        raise ValueError("not a binary COPY stream")
    _flags, extension = _HEADER.unpack_from(data, len(SIGNATURE))
    return len(SIGNATURE) + _HEADER.size + extension


def copy_out(cursor, sql: str, params: tuple | list = ()) -> memoryview:
    """Run `COPY (<sql>) TO STDOUT (FORMAT binary)` on a psycopg2 cursor and return the raw stream."""
    buffer = io.BytesIO()
    query = cursor.mogrify(sql, params).decode()
    cursor.copy_expert(f"COPY ({query}) TO STDOUT (FORMAT binary)", buffer)
    return buffer.getbuffer()


def parse_rows(data: memoryview) -> list[list[memoryview | None]]:
    """Every tuple as a list of field values (raw bytes, None for NULL). For streams of a few thousand rows."""
    rows = []
    offset = _body_start(data)
    while True:
        (n_fields,) = _SHORT.unpack_from(data, offset)
        offset += 2
        if n_fields == -1:
            return rows
        fields: list[memoryview | None] = []
        for _ in range(n_fields):
            (length,) = _INT.unpack_from(data, offset)
            offset += 4
            if length == -1:
                fields.append(None)
            else:
                fields.append(data[offset : offset + length])
                offset += length
        rows.append(fields)


def parse_fixed(data: memoryview, dtypes: list[str]) -> dict[str, np.ndarray]:
    """A stream whose fields are all fixed-width and never NULL, as one numpy array per field.

    `dtypes` are big-endian numpy codes in column order, e.g. [">i8", ">i4", ">i2"] for bigint, int, smallint.
    Returns {"f0": ..., "f1": ...} in native byte order.
    """
    layout = [("count", ">i2")]
    for i, dtype in enumerate(dtypes):
        layout += [(f"len{i}", ">i4"), (f"f{i}", dtype)]
    record = np.dtype(layout)
    start = _body_start(data)
    body = data[start : len(data) - 2]  # the trailer is a field count of -1
    if len(body) % record.itemsize:
        raise ValueError("the stream has NULLs or fields of another width than declared")
    table = np.frombuffer(body, dtype=record)
    return {f"f{i}": table[f"f{i}"].astype(np.dtype(dtype).newbyteorder("=")) for i, dtype in enumerate(dtypes)}


# ---------------------------------------------------------------- writing (COPY ... FROM STDIN (FORMAT binary))
#
# Why binary for writes too: in text or CSV COPY every timestamp is formatted by the client and parsed by
# the server, and a bytea INSERT is hex-encoded (twice its size) and decoded again. Measured on a
# 300,000-row upload: formatting the index rows' timestamps as CSV took 0.9 s, about a third of the
# server's COPY, and the hex-escaped INSERT of the batch row 1.0 s, a fifth of the request. In binary,
# integers, timestamps and bytes travel as they are in memory (big-endian): the payload is a few numpy copies.

HEADER = SIGNATURE + _HEADER.pack(0, 0)
TRAILER = struct.pack(">h", -1)
# Postgres timestamps count microseconds from 2000-01-01, not from the Unix epoch.
PG_EPOCH_US = 946_684_800_000_000

INDEX_ROW = np.dtype([
    ("n_fields", ">i2"),
    ("deployment_len", ">i4"), ("deployment_id", ">i8"),
    ("timestamp_len", ">i4"), ("timestamp", ">i8"),
    ("batch_len", ">i4"), ("batch_id", ">i8"),
    ("row_len", ">i4"), ("row", ">i4"),
    ("request_id_len", ">i4"),
])


def index_rows(
    *, deployment_id: int, batch_id: int, rows: np.ndarray, timestamps_us: np.ndarray, joined_ids: bytes
) -> bytes:
    """Rows for COPY <index> (deployment_id, timestamp, batch_id, row, request_id) FROM STDIN (FORMAT binary).

    rows are the offsets in the batch, timestamps_us and joined_ids (UTF-8 request ids joined by newlines;
    ids never contain one: batches.py rejects it) in the same order. The variable-length id comes last in
    each row so that a row is one fixed 50-byte record followed by the id's bytes, and the whole payload
    is two masked assignments.
    """
    n = len(timestamps_us)
    raw = np.frombuffer(joined_ids, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    ends = np.append(newlines, len(raw))
    lengths = ends - np.concatenate(([0], newlines + 1))
    if len(lengths) != n:
        raise ValueError(f"{len(lengths)} ids for {n} rows")
    fixed = np.empty(n, dtype=INDEX_ROW)
    fixed["n_fields"] = 5
    fixed["deployment_len"], fixed["deployment_id"] = 8, deployment_id
    fixed["timestamp_len"], fixed["timestamp"] = 8, timestamps_us.astype(np.int64) - PG_EPOCH_US
    fixed["batch_len"], fixed["batch_id"] = 8, batch_id
    fixed["row_len"], fixed["row"] = 4, rows
    fixed["request_id_len"] = lengths
    width = INDEX_ROW.itemsize
    id_bytes = raw[raw != 10] if len(newlines) else raw
    # Where each id byte lands: its offset among the id bytes, plus the fixed records of its row and those before.
    row_of_byte = np.repeat(np.arange(n), lengths)
    positions = np.arange(len(id_bytes)) + (row_of_byte + 1) * width
    body = np.empty(n * width + len(id_bytes), dtype=np.uint8)
    is_id = np.zeros(len(body), dtype=bool)
    is_id[positions] = True
    body[is_id] = id_bytes
    body[~is_id] = fixed.view(np.uint8)
    return HEADER + body.tobytes() + TRAILER


def _field(value: object, kind: str) -> list[bytes | memoryview]:
    """The field's length word and its bytes; a bytea value is passed on as it is, not copied."""
    if value is None:
        return [struct.pack(">i", -1)]
    if kind == "int8":
        data = struct.pack(">q", value)
    elif kind == "int4":
        data = struct.pack(">i", value)
    elif kind == "timestamptz":  # microseconds since the Unix epoch, UTC
        data = struct.pack(">q", int(value) - PG_EPOCH_US)
    elif kind == "text":
        data = str(value).encode()
    elif kind == "jsonb":  # jsonb's binary input: a version byte, then the JSON text
        data = b"\x01" + bytes(value)
    elif kind == "bytea":
        data = memoryview(value).cast("B")
    else:
        raise ValueError(f"unsupported type {kind}")
    return [struct.pack(">i", len(data)), data]


def one_row(fields: list[tuple[object, str]]) -> PartsReader:
    """One row for COPY ... FROM STDIN (FORMAT binary), as a file for copy_expert: fields as (value,
    postgres type) pairs, in column order. A 1M-row batch carries 97 MB of bytea; joining it into one
    bytes object first cost three copies, a tenth of a second."""
    parts: list[bytes | memoryview] = [HEADER, struct.pack(">h", len(fields))]
    for value, kind in fields:
        parts += _field(value, kind)
    return PartsReader([*parts, TRAILER])


class PartsReader:
    """A read-only file over a list of byte buffers, read in order without joining them."""

    def __init__(self, parts: list[bytes | memoryview]):
        self._parts = [memoryview(part).cast("B") for part in parts]
        self._current = 0
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        chunks: list[memoryview] = []
        wanted = size if size >= 0 else sum(len(part) for part in self._parts)
        while wanted > 0 and self._current < len(self._parts):
            part = self._parts[self._current]
            chunk = part[self._offset : self._offset + wanted]
            chunks.append(chunk)
            wanted -= len(chunk)
            self._offset += len(chunk)
            if self._offset >= len(part):
                self._current, self._offset = self._current + 1, 0
        return b"".join(chunks)


def many_rows(rows: list[list[tuple[object, str]]]) -> PartsReader:
    """Rows for COPY ... FROM STDIN (FORMAT binary), each as one_row takes its fields, in one stream: a
    few hundred batch rows cost one round trip instead of one each."""
    parts: list[bytes | memoryview] = [HEADER]
    for fields in rows:
        parts.append(struct.pack(">h", len(fields)))
        for value, kind in fields:
            parts += _field(value, kind)
    return PartsReader([*parts, TRAILER])
