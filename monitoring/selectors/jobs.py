"""Maintenance jobs, and which kinds fit a version (monitoring/maintenance/applicability.py decides)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.db.models import QuerySet

from monitoring.blobs import blob_read
from monitoring.models import (
    Deployment,
    MaintenanceJob,
    ModelVersion,
)


def jobs_for(*, deployment: Deployment) -> QuerySet[MaintenanceJob]:
    return deployment.jobs.select_related("source_version", "candidate", "requested_by").order_by("-created_at")


@lru_cache(maxsize=256)
def _kind_options(sha256: str, *, has_recipe: bool, has_reference: bool, has_evaluation_set: bool) -> tuple:
    """Cached by content: the answer depends only on the file (whose sha256 is its identity) and the flags, and
    the float16 check loads a converted session, which every page view would otherwise repeat."""
    from monitoring.maintenance.applicability import kind_options

    return tuple(kind_options(
        onnx_bytes=blob_read(sha256), has_recipe=has_recipe, has_reference=has_reference,
        has_evaluation_set=has_evaluation_set,
    ))


@dataclass(frozen=True)
class JobOption:
    kind: str
    label: str
    applicable: bool
    reason: str


def job_options(*, version: ModelVersion) -> list[JobOption]:
    """Every maintenance job kind for this version: whether it applies to its graph and data, and why not."""
    deployment = version.deployment
    evaluation = deployment.evaluation_dataset
    options = _kind_options(
        version.sha256,
        has_recipe=bool(version.recipe_sha256),
        has_reference=deployment.reference_dataset_id is not None,
        has_evaluation_set=evaluation is not None and evaluation.has_labels,
    )
    labels = dict(MaintenanceJob.Kind.choices)
    return [JobOption(o.kind, labels[o.kind], o.applicable, o.reason) for o in options]
