"""A content-addressed file store: every blob is named by its sha256.

Reads verify the hash before returning bytes, so a model file that changed on
disk (corruption, tampering) is never loaded. Plain Python: the root is passed in.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


class BlobIntegrityError(Exception):
    """The bytes on disk do not hash to the name they are stored under."""


class BlobMissingError(Exception):
    pass


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_path(root: Path, sha256: str) -> Path:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return Path(root) / "blobs" / sha256[:2] / sha256[2:4] / sha256


_path_for = blob_path  # the name tests and older callers use


def put_blob(root: Path, data: bytes) -> str:
    """Store bytes and return their sha256. Storing the same bytes twice only refreshes the file's age."""
    digest = sha256_hex(data)
    path = blob_path(root, digest)
    if path.exists():
        path.touch()  # young again: garbage collection spares young files, whose rows may not have committed yet
        return digest
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: a crash never leaves a half-written file under a valid name.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def read_blob(root: Path, sha256: str) -> bytes:
    path = blob_path(root, sha256)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BlobMissingError(f"blob {sha256[:12]}… is missing from the store") from None
    actual = sha256_hex(data)
    if actual != sha256:
        raise BlobIntegrityError(f"blob {sha256[:12]}… fails verification (hashes to {actual[:12]}…)")
    return data


def blob_exists(root: Path, sha256: str) -> bool:
    return blob_path(root, sha256).exists()


def delete_blob(root: Path, sha256: str) -> None:
    blob_path(root, sha256).unlink(missing_ok=True)


def files_older_than(root: Path, cutoff: float) -> Iterator[tuple[str | None, Path]]:
    """(sha256, path) of every stored file last written before `cutoff` (a Unix time); sha256 is None for a
    write that never finished (a temporary file left by a crash)."""
    for path in (Path(root) / "blobs").glob("*/*/*"):
        try:
            if path.stat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        yield (None if path.name.startswith(".incoming-") else path.name), path


def delete_if_older(path: Path, cutoff: float) -> bool:
    """Delete the file if it was still last written before `cutoff` (a Unix time). True if deleted."""
    try:
        if path.stat().st_mtime >= cutoff:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def walk_blobs(root: Path) -> Iterator[tuple[str | None, Path]]:
    """(sha256, path) of every stored file, one directory at a time (memory stays flat whatever the count);
    sha256 is None for a temporary file of a write that never finished."""
    base = Path(root) / "blobs"
    for level1 in _sorted_dirs(base):
        for level2 in _sorted_dirs(level1):
            with os.scandir(level2) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        yield (None if entry.name.startswith(".incoming-") else entry.name), Path(entry.path)


def _sorted_dirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


# Hashing reads this much at a time: a 2 GB model is verified in constant memory.
HASH_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
