"""Helpers for the page tests: evaluation runs, the blob store's files, audit counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from monitoring import services
from monitoring.models import (
    AuditEvent,
    EvaluationRun,
)

pytestmark = pytest.mark.django_db


def _evaluate(deployment, version, *, accuracy: float, at, source=EvaluationRun.Source.EVALUATION_SET) -> EvaluationRun:
    run = EvaluationRun.objects.create(
        deployment=deployment, version=version, source=source, dataset=deployment.evaluation_dataset, measured_at=at
    )
    metrics = {"n_rows": 219, "accuracy": accuracy, "f1_macro": accuracy - 0.01, "roc_auc": 0.99, "latency_p95_ms": 0.12}
    return services.evaluation_complete(run=run, metrics=metrics)


def _blobs() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _audit_count(**filters) -> int:
    return AuditEvent.objects.filter(**filters).count()
