"""Postgres COPY in binary format, read without per-value parsing. No Django here.

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
