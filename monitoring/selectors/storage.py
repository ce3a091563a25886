"""The media store checked against the rows that name its files (manage.py verify_storage).

Both sides are streamed: the rows' sha256s one table at a time, in order and without repeats, and the files one
directory at a time, each looked up against the rows in chunks. Nothing holds the whole store in memory."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db.models import Model

from monitoring import storage
from monitoring.models import Dataset, ModelVersion, PredictionBatch, ReferenceProfile

# Every column that names a file in the media store: the collector keeps what they name, verify_storage checks it.
BLOB_COLUMNS: tuple[tuple[type[Model], str], ...] = (
    (ModelVersion, "sha256"),
    (ModelVersion, "recipe_sha256"),
    (Dataset, "sha256"),
    (ReferenceProfile, "sha256"),
    (PredictionBatch, "columns_sha256"),
)
# Files looked up against the rows per query, when listing orphans.
ORPHAN_LOOKUP_CHUNK = 1_000
# Rows named per finding: enough to find them, not a megabyte for a file a million batches share.
NAMED_BY_SHOWN = 5


@dataclass(frozen=True)
class Finding:
    problem: str  # "missing", "corrupt", "orphan" or "incomplete" (a temporary file of a write that died)
    sha256: str | None
    path: str
    named_by: list[str] = field(default_factory=list)  # "ModelVersion 12", for missing and corrupt
    detail: str = ""

    @property
    def is_damage(self) -> bool:
        """A row names a file that is gone or wrong: data is lost. Orphans only waste space."""
        return self.problem in {"missing", "corrupt"}


@dataclass
class StorageTally:
    named: int = 0  # distinct (column, sha256) checked
    verified_bytes: int = 0
    files: int = 0
    findings: dict[str, int] = field(default_factory=dict)


def blobs_named(among: set[str] | None) -> set[str]:
    """The sha256s some row names: all of them, or those of `among` (one indexed or small query per column)."""
    named: set[str] = set()
    for model, column in BLOB_COLUMNS:
        rows = model._default_manager.exclude(**{column: ""})
        if among is not None:
            rows = rows.filter(**{f"{column}__in": among})
        named |= set(rows.values_list(column, flat=True))
    return named


def _named_by(model: type[Model], column: str, sha256: str) -> list[str]:
    ids = model._default_manager.filter(**{column: sha256}).order_by("pk").values_list("pk", flat=True)[:NAMED_BY_SHOWN]
    return [f"{model.__name__} {pk}" + ("" if column == "sha256" else f" ({column})") for pk in ids]


def _named_digests(model: type[Model], column: str) -> Iterator[str]:
    rows = model._default_manager.exclude(**{column: ""}).order_by(column).values_list(column, flat=True).distinct()
    return rows.iterator(chunk_size=2_000)


def storage_check(*, root: Path, verify_hashes: bool = True, tally: StorageTally | None = None) -> Iterator[Finding]:
    """Every problem of the store under `root`: files rows name that are missing or do not hash to their name,
    then files no row names (orphans, with their age: a file younger than the collector's grace may belong to a
    row still being written)."""
    tally = tally if tally is not None else StorageTally()
    for model, column in BLOB_COLUMNS:
        for sha256 in _named_digests(model, column):
            tally.named += 1
            finding = _check_one(root, sha256, verify_hashes, tally)
            if finding is not None:
                yield _count(tally, Finding(finding.problem, sha256, finding.path, _named_by(model, column, sha256), finding.detail))
    yield from _orphans(root, tally)


def _check_one(root: Path, sha256: str, verify_hashes: bool, tally: StorageTally) -> Finding | None:
    try:
        path = storage.blob_path(root, sha256)
    except ValueError:
        return Finding("corrupt", sha256, "", detail="the row's sha256 is not a hex digest")
    try:
        size = path.stat().st_size
        actual = storage.file_sha256(path) if verify_hashes else sha256
    except FileNotFoundError:
        return Finding("missing", sha256, str(path))
    tally.verified_bytes += size if verify_hashes else 0
    if actual != sha256:
        return Finding("corrupt", sha256, str(path), detail=f"hashes to {actual}")
    return None


def _orphans(root: Path, tally: StorageTally) -> Iterator[Finding]:
    files = storage.walk_blobs(root)
    while chunk := list(itertools.islice(files, ORPHAN_LOOKUP_CHUNK)):
        tally.files += len(chunk)
        named = blobs_named({digest for digest, _ in chunk if digest is not None})
        for digest, path in chunk:
            if digest is None:
                yield _count(tally, Finding("incomplete", None, str(path), detail=_age(path)))
            elif digest not in named:
                yield _count(tally, Finding("orphan", digest, str(path), detail=_age(path)))


def _age(path: Path) -> str:
    try:
        hours = (time.time() - path.stat().st_mtime) / 3600
    except FileNotFoundError:
        return "deleted meanwhile"
    return f"last written {hours:.1f} h ago"


def _count(tally: StorageTally, finding: Finding) -> Finding:
    tally.findings[finding.problem] = tally.findings.get(finding.problem, 0) + 1
    return finding
