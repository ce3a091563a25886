"""manage.py verify_storage: every file a row names exists and hashes to its name; orphans are listed; the exit
status says whether data is damaged; --json gives one finding per line and a summary."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from monitoring import storage
from monitoring.models import ModelVersion
from monitoring.selectors import storage as storage_selectors
from tests.monitoring.services.ingestion_helpers import prediction_rows


def _verify(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("verify_storage", *args, stdout=out)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue()
    return 0, out.getvalue()


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


@pytest.fixture(autouse=True)
def _own_media_root(settings, tmp_path):
    """A store of this test's own: the session's shared one holds other tests' files (and these tests damage it)."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def stored(deployment, settings):
    """The deployment's model, recipe and datasets, and a large batch whose columns are a file."""
    from monitoring import services

    settings.BATCH_COLUMNS_IN_MEDIA_FROM_BYTES = 0
    services.predictions_ingest(deployment=deployment, rows=prediction_rows(30))
    return deployment


def test_a_whole_store_is_clean(stored):
    code, output = _verify("--json")

    assert code == 0
    (summary,) = _lines(output)
    # v1's model and recipe, the two datasets, the batch's columns: five files, all hashed.
    assert summary["summary"]["ok"] and summary["summary"]["named_files"] == 5
    assert summary["summary"]["stored_files"] == 5 and summary["summary"]["findings"] == {}
    assert summary["summary"]["verified_bytes"] > 0


def test_a_file_that_changed_on_disk_is_corrupt_and_names_its_row(stored):
    version = ModelVersion.objects.get(deployment=stored, number=1)
    storage.blob_path(settings.MEDIA_ROOT, version.sha256).write_bytes(b"not the model any more")

    code, output = _verify("--json")

    assert code == 1
    findings = _lines(output)
    (corrupt,) = [f for f in findings if "problem" in f]
    assert corrupt["problem"] == "corrupt" and corrupt["sha256"] == version.sha256
    assert corrupt["named_by"] == [f"ModelVersion {version.pk}"]
    assert corrupt["detail"].startswith("hashes to ")
    assert findings[-1]["summary"]["ok"] is False
    # --quick only checks that files exist: a changed file passes it.
    assert _verify("--quick")[0] == 0


def test_a_missing_dataset_file_fails_the_check_in_words(stored):
    dataset = stored.reference_dataset
    storage.delete_blob(settings.MEDIA_ROOT, dataset.sha256)

    code, output = _verify()

    assert code == 1
    assert f"missing    {dataset.sha256}" in output and f"(named by Dataset {dataset.pk})" in output
    assert output.strip().splitlines()[-1].startswith("FAILED: 5 named file(s) checked")


def test_orphans_and_unfinished_writes_are_listed_and_fail_only_a_strict_check(stored):
    orphan = storage.put_blob(settings.MEDIA_ROOT, b"bytes no row names")
    leftover = storage.blob_path(settings.MEDIA_ROOT, orphan).parent / ".incoming-abc123"
    leftover.write_bytes(b"half a write")

    code, output = _verify("--json")

    assert code == 0
    problems = {(f["problem"], f["sha256"]) for f in _lines(output) if "problem" in f}
    assert problems == {("orphan", orphan), ("incomplete", None)}
    assert _lines(output)[-1]["summary"]["findings"] == {"orphan": 1, "incomplete": 1}
    assert _verify("--strict")[0] == 1


def test_many_files_are_looked_up_in_chunks_and_every_orphan_is_found(stored, monkeypatch):
    monkeypatch.setattr(storage_selectors, "ORPHAN_LOOKUP_CHUNK", 7)
    orphans = {storage.put_blob(settings.MEDIA_ROOT, f"orphan {i}".encode()) for i in range(40)}

    code, output = _verify("--json")

    assert code == 0
    found = [f["sha256"] for f in _lines(output) if f.get("problem") == "orphan"]
    assert sorted(found) == sorted(orphans)
    assert _lines(output)[-1]["summary"]["stored_files"] == 45
