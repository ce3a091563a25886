"""The binary COPY row writer: what psycopg2 reads from it is exactly the joined parts, in any chunk size."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring import pgcopy


@pytest.mark.parametrize("size", [1, 7, 4096, -1])
def test_a_parts_reader_yields_the_parts_in_order_whatever_the_read_size(size):
    features = np.arange(1000, dtype="<f4")
    parts = [b"head", b"", memoryview(features).cast("B"), b"tail"]
    reader = pgcopy.PartsReader(parts)

    chunks = []
    while chunk := reader.read(size):
        chunks.append(chunk)

    assert b"".join(chunks) == b"head" + features.tobytes() + b"tail"
    assert all(len(chunk) == size for chunk in chunks[:-1]) or size == -1


def test_one_row_lays_out_a_binary_copy_row():
    row = pgcopy.one_row([(7, "int8"), (None, "bytea"), (b"\x01\x02", "bytea"), ("slug", "text")]).read()

    assert row == (
        pgcopy.HEADER + (4).to_bytes(2, "big")
        + (8).to_bytes(4, "big") + (7).to_bytes(8, "big")
        + (-1).to_bytes(4, "big", signed=True)
        + (2).to_bytes(4, "big") + b"\x01\x02"
        + (4).to_bytes(4, "big") + b"slug"
        + pgcopy.TRAILER
    )
