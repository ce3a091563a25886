"""Reading what the media store holds: bytes verified against their sha256, datasets as arrays, versions as
runners. The read side: selectors and services both use it, and it imports neither (services.blob_put writes)."""

from __future__ import annotations

import io

import numpy as np
from django.conf import settings

from monitoring import storage
from monitoring.models import Dataset, ModelVersion
from monitoring.runtime import SESSIONS, ModelRunner


def blob_read(sha256: str) -> bytes:
    """Bytes verified against their sha256; raises storage.BlobIntegrityError on mismatch."""
    return storage.read_blob(settings.MEDIA_ROOT, sha256)


def dataset_load(dataset: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(io.BytesIO(blob_read(dataset.sha256)), allow_pickle=False) as archive:
        X = archive["X"]
        y = archive["y"] if "y" in archive.files else None
    return X, y


def runner_for(version: ModelVersion) -> ModelRunner:
    """A cached onnxruntime runner; on first use the bytes are read and verified against the version's sha256."""
    return SESSIONS.get(
        version.sha256,
        lambda: ModelRunner(
            blob_read(version.sha256),
            label_output=version.label_output,
            probability_output=version.probability_output,
            class_labels=version.class_labels,
        ),
    )
