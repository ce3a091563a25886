"""Reference and evaluation datasets: registering arrays and uploaded files."""

from __future__ import annotations

import io

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from monitoring import background, tabular
from monitoring.models import (
    Dataset,
    Deployment,
)
from monitoring.services.audit import audit_record
from monitoring.services.blobs import blob_put
from monitoring.services.errors import TooLarge, ValidationFailed
from monitoring.services.ingestion import _file_limits


def dataset_to_bytes(X: np.ndarray, y: np.ndarray | None) -> bytes:
    buffer = io.BytesIO()
    arrays = {"X": np.ascontiguousarray(X, dtype=np.float32)}
    if y is not None:
        arrays["y"] = np.asarray(y).astype(str)
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def dataset_register(
    *,
    deployment: Deployment,
    kind: str,
    name: str,
    X: np.ndarray,
    y: np.ndarray | None,
    by: AbstractBaseUser | None,
    make_current: bool = True,
) -> Dataset:
    name = _dataset_name(name, kind)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != deployment.n_features:
        raise ValidationFailed(
            f"The dataset has shape {list(X.shape)}; the deployment needs n_rows × {deployment.n_features}."
        )
    if len(X) == 0:
        raise ValidationFailed("The dataset has no rows.")
    bad_rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad_rows):
        raise ValidationFailed(f"The dataset has NaN or infinite values, first in row {int(bad_rows[0])}.")
    if kind == Dataset.Kind.EVALUATION and y is None:
        raise ValidationFailed("An evaluation dataset needs labels.")
    if y is not None:
        y = np.asarray(y).astype(str)
        if len(y) != len(X):
            raise ValidationFailed(f"The dataset has {len(X)} rows but {len(y)} labels.")
        unknown = sorted(set(np.unique(y)) - set(deployment.class_labels))
        if unknown:
            raise ValidationFailed(f"The dataset has labels the deployment does not know: {unknown[:5]}.")
    data = dataset_to_bytes(X, y)
    with transaction.atomic():
        return _dataset_create(
            deployment=deployment, kind=kind, name=name, sha256=blob_put(data), size_bytes=len(data), n_rows=len(X),
            has_labels=y is not None, by=by, make_current=make_current,
        )


def dataset_upload(
    *, deployment: Deployment, kind: str, data: bytes, filename: str, name: str = "", by: AbstractBaseUser | None
) -> Dataset:
    """Register a dataset from the bytes of a CSV or Parquet file (monitoring/tabular.py), as the deployment's
    current one of its kind. The name defaults to the file's. Errors name the line (or row) and column."""
    name = _dataset_name(name or filename, kind)  # before the file is read: a bad name costs nothing
    try:
        table = tabular.read_dataset(data, filename=filename, feature_names=deployment.feature_names, limits=_file_limits())
    except tabular.TableError as exc:
        errors = [{"line": exc.line, "field": exc.column, "message": exc.message}] if exc.line or exc.column else []
        raise (TooLarge if exc.too_large else ValidationFailed)(exc.message, errors=errors) from None
    return dataset_register(deployment=deployment, kind=kind, name=name, X=table.X, y=table.y, by=by)


def _dataset_name(name: str, kind: str) -> str:
    if kind not in Dataset.Kind.values:
        raise ValidationFailed(f"A dataset's kind is one of {', '.join(Dataset.Kind.values)}.", errors=[
            {"field": "kind", "message": f"must be one of {', '.join(Dataset.Kind.values)}"}])
    name = name.strip() or kind
    limit = Dataset._meta.get_field("name").max_length
    if len(name) > limit:
        raise ValidationFailed(f"A dataset's name is at most {limit} characters; this one has {len(name)}.",
                               errors=[{"field": "name", "message": f"at most {limit} characters"}])
    return name


def _dataset_create(
    *, deployment: Deployment, kind: str, name: str, sha256: str, size_bytes: int, n_rows: int, has_labels: bool,
    by: AbstractBaseUser | None, make_current: bool,
) -> Dataset:
    dataset = Dataset.objects.create(
        deployment=deployment,
        kind=kind,
        name=name,
        sha256=sha256,
        size_bytes=size_bytes,
        n_rows=n_rows,
        has_labels=has_labels,
        created_by=by,
    )
    if make_current:
        field = "reference_dataset" if kind == Dataset.Kind.REFERENCE else "evaluation_dataset"
        setattr(deployment, field, dataset)
        deployment.save(update_fields=[field])
        if kind == Dataset.Kind.REFERENCE:
            # The drift profile is computed once, when the dataset becomes the reference (not at the first check).
            background.enqueue("workers.tasks.build_reference_profile_task", deployment.pk)
    audit_record(
        action="dataset.register",
        actor=by,
        actor_label="" if by else "system",
        deployment=deployment,
        obj=dataset,
        after={"kind": kind, "rows": n_rows, "sha256": sha256, "current": make_current},
    )
    return dataset
