"""The disk under MEDIA_ROOT full: a batch whose columns go to the media store is refused with a 507
problem+json that says so, and nothing is half-written: no batch row, no index rows, no partial file. Once room
is made the same request is stored. The disk is a real tmpfs, the stack's MEDIA_ROOT, filled to the brim."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.faults.conftest import post_batch, rows, seed, stored
from tests.faults.stack import Stack

pytestmark = pytest.mark.faults


@pytest.fixture
def small_disk(stack: Stack) -> Path:
    """The stack's MEDIA_ROOT, a 16 MiB tmpfs of its own (tests/faults/stack.py)."""
    if not stack.media_is_tmpfs:
        pytest.skip("MEDIA_ROOT could not be a tmpfs of its own here (mounting needs root or CAP_SYS_ADMIN), and "
                    "filling the machine's real disk is not an option")
    return stack.media


def _fill(disk: Path) -> Path:
    """Write until the filesystem says ENOSPC; the file stays, so the disk stays full."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _files(disk: Path) -> list[str]:
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file())


def test_a_full_media_disk_is_a_507_with_nothing_half_written_and_the_retry_stores_once_room_is_made(
    stack: Stack, web: str, small_disk: Path
):
    # Every batch's columns go to the media store here (BATCH_COLUMNS_IN_MEDIA_FROM_BYTES is 1 KB on the stack).
    url = web
    seeded = seed(stack, "disk-full")
    before = _files(small_disk)
    filler = _fill(small_disk)
    batch = rows(200, prefix="disk")

    refused = post_batch(url, seeded, batch, key="disk-1")

    assert refused.status == 507, refused.data
    assert refused.headers["Content-Type"] == "application/problem+json"
    body = refused.json()
    assert body["title"] == "Insufficient Storage" and "no room" in body["detail"] and "nothing was stored" in body["detail"]
    assert stored(stack, seeded) == (0, 0, 0)
    assert _files(small_disk) == sorted([*before, "filler"])  # no blob and no .incoming- temporary file left behind
    os.unlink(filler)

    accepted = post_batch(url, seeded, batch, key="disk-1")

    assert accepted.status == 201, accepted.data
    assert stored(stack, seeded) == (200, 200, 200)
    (sha256,) = stack.sql("SELECT columns_sha256 FROM monitoring_predictionbatch WHERE deployment_id = %s",
                          seeded.deployment_id)[0]
    assert _files(small_disk) == sorted([*before, f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"])
