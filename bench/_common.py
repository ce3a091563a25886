"""What the bench scripts share: Django set up from the environment, a throwaway deployment, synthetic traffic.

Run from the repo root with the same environment as the app (DATABASE_URL, SECRET_KEY, ...).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

import django

django.setup()

import numpy as np
from django.conf import settings
from django.db import connection

from monitoring import batches, storage
from monitoring.models import Deployment, PredictionBatch, Team

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_deployment(slug: str, *, n_features: int, classes: list[str]) -> Deployment:
    """A bare deployment (no audit trail, so the bench can delete it and everything under it afterwards)."""
    drop_deployment(slug)
    team, _ = Team.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    return Deployment.objects.create(
        team=team, slug=slug, name=slug, feature_names=[f"f{i}" for i in range(n_features)], class_labels=classes
    )


def drop_deployment(slug: str) -> None:
    deployment = Deployment.objects.filter(slug=slug).first()
    if deployment is None:
        return
    files = set(PredictionBatch.objects.filter(deployment=deployment).exclude(columns_sha256="").values_list("columns_sha256", flat=True))
    with connection.cursor() as cursor:
        # Raw deletes: the ORM's cascade would load a million rows into Python first.
        cursor.execute("DELETE FROM monitoring_prediction WHERE deployment_id = %s", [deployment.pk])
        cursor.execute("DELETE FROM monitoring_predictionbatch WHERE deployment_id = %s", [deployment.pk])
    deployment.delete()
    # Its batches' files now, not at the next garbage collection: a run leaves gigabytes.
    for digest in files - set(PredictionBatch.objects.filter(columns_sha256__in=files).values_list("columns_sha256", flat=True)):
        storage.delete_blob(settings.MEDIA_ROOT, digest)


def synthetic_columns(n: int, *, n_features: int, n_classes: int, start: int, seed: int = 0) -> batches.Columns:
    rng = np.random.default_rng(seed + start)
    return batches.Columns(
        joined_ids=batches.encode_ids([f"r{i}" for i in range(start, start + n)]),
        timestamps_us=batches.to_timestamps_us(np.datetime64(T0.replace(tzinfo=None), "us"))
        + np.arange(start, start + n, dtype=np.int64) * 1000,
        features=rng.normal(size=(n, n_features)).astype(np.float32),
        predicted=rng.integers(0, n_classes, n).astype(np.int16),
        probabilities=None,
    )


def stored_rows(deployment: Deployment) -> tuple[int, int, int]:
    """(index rows, distinct ids, rows in batch headers): all three equal when nothing was lost or duplicated."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM monitoring_prediction WHERE deployment_id = %s", [deployment.pk]
        )
        rows, distinct = cursor.fetchone()
    in_batches = sum(PredictionBatch.objects.filter(deployment=deployment).values_list("n_rows", flat=True))
    return rows, distinct, in_batches


@contextmanager
def timed(label: str, results: dict):
    start = time.perf_counter()
    yield
    results[label] = time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_call(run, n: int) -> tuple[float, float]:
    """(p50 ms, p95 ms) of n calls of run() after one warm-up."""
    run()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), percentile(times, 0.95)
