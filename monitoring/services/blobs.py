"""Writing to the media store, and collecting the files no row names any more (reading: monitoring/blobs.py)."""

from __future__ import annotations

import errno
import time
from datetime import timedelta

from django.conf import settings

from monitoring import storage
from monitoring.selectors.storage import blobs_named
from monitoring.services.errors import InsufficientStorage


def blob_put(data: bytes) -> str:
    """Store bytes for a row about to be written. If the row's transaction fails, the file stays until
    storage_collect_garbage finds it named by no row: deleting it at once could take it from a concurrent
    request that stored the same bytes and committed.

    A full disk is the user's to fix, not a bug: a 507 that says so (put_blob has removed its partial file)."""
    try:
        return storage.put_blob(settings.MEDIA_ROOT, data)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise InsufficientStorage(
            f"The media store (MEDIA_ROOT) has no room for {len(data):,} more bytes; nothing was stored. "
            "Free space or grow the volume, then send the same request again."
        ) from None


# A file younger than this may belong to a row whose transaction has not committed yet.
BLOB_GRACE = timedelta(hours=1)


def storage_collect_garbage(*, older_than: timedelta = BLOB_GRACE) -> int:
    """Delete the media store's files that no row names any more (batches rejected or deleted with their
    deployment, deleted versions and datasets), and temporary files of writes that never finished.
    Returns how many were deleted."""
    cutoff = time.time() - older_than.total_seconds()
    # Old files first, then the rows naming files, then each file's age again: a row committed after the
    # query reused its file through put_blob, which made it young again.
    candidates = list(storage.files_older_than(settings.MEDIA_ROOT, cutoff))
    referenced = blobs_named(None)
    return sum(storage.delete_if_older(path, cutoff) for digest, path in candidates if digest not in referenced)


def storage_collect(*, digests: set[str], older_than: timedelta = BLOB_GRACE) -> int:
    """The collector for a few files a purge just stopped naming: each is deleted if no row names it any more
    (blobs are content-addressed, so another batch or deployment may share it) and it is past the grace age
    (a row being written may have just reused it). Returns how many were deleted."""
    if not digests:
        return 0
    cutoff = time.time() - older_than.total_seconds()
    unnamed = digests - blobs_named(digests)
    return sum(storage.delete_if_older(storage.blob_path(settings.MEDIA_ROOT, d), cutoff) for d in unnamed)
