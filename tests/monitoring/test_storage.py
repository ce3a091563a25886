"""The content-addressed blob store verifies every read."""

from __future__ import annotations

import pytest

from monitoring import storage


def _path(root, digest):
    return root / "blobs" / digest[:2] / digest[2:4] / digest


def test_a_blob_is_stored_under_its_sha256_and_read_back(tmp_path):
    digest = storage.put_blob(tmp_path, b"model bytes")

    assert digest == storage.sha256_hex(b"model bytes")
    assert storage.read_blob(tmp_path, digest) == b"model bytes"
    assert storage.blob_exists(tmp_path, digest)


def test_storing_the_same_bytes_twice_keeps_one_file(tmp_path):
    first = storage.put_blob(tmp_path, b"same")
    second = storage.put_blob(tmp_path, b"same")

    assert first == second
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == [first]


def test_it_detects_a_tampered_blob(tmp_path):
    digest = storage.put_blob(tmp_path, b"the real model")
    _path(tmp_path, digest).write_bytes(b"a swapped model")

    with pytest.raises(storage.BlobIntegrityError, match="fails verification"):
        storage.read_blob(tmp_path, digest)


def test_a_missing_blob_is_reported_as_missing(tmp_path):
    with pytest.raises(storage.BlobMissingError):
        storage.read_blob(tmp_path, storage.sha256_hex(b"never stored"))


def test_a_name_that_is_not_a_sha256_is_refused(tmp_path):
    with pytest.raises(ValueError):
        storage.read_blob(tmp_path, "../../etc/passwd")


def test_deleting_a_blob_removes_it(tmp_path):
    digest = storage.put_blob(tmp_path, b"gone soon")

    storage.delete_blob(tmp_path, digest)

    assert not storage.blob_exists(tmp_path, digest)
