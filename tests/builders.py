"""Shared builders for tests: a deployment with its model and datasets, and a real Celery worker process."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from monitoring import services
from monitoring.models import Dataset, Deployment, ModelVersion, ServingPeriod, Team

ROOT = Path(__file__).resolve().parent.parent


def make_deployment(
    *,
    team: Team,
    by: AbstractBaseUser,
    name: str,
    slug: str,
    feature_names: list[str],
    class_labels: list[str],
    model: bytes,
    recipe: bytes | None = None,
    train: tuple[np.ndarray, np.ndarray] | None = None,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
    serving_for: timedelta = timedelta(days=90),
    **options: Any,
) -> Deployment:
    """A deployment whose v1 is `model` (active, as the first version), with `train` as its reference dataset and
    `holdout` as its labelled evaluation set. `options` go to services.deployment_create (metric_thresholds …).

    v1 has been serving for `serving_for`, so the history a test writes falls inside its serving period (the
    health chart draws a version's points only from while it served)."""
    deployment = services.deployment_create(
        team=team, name=name, slug=slug, feature_names=feature_names, class_labels=class_labels, by=by, **options
    )
    v1 = services.version_register(deployment=deployment, data=model, recipe=recipe, by=by)
    since = timezone.now() - serving_for
    ModelVersion.objects.filter(pk=v1.pk).update(activated_at=since)
    ServingPeriod.objects.filter(version=v1).update(started_at=since)
    for kind, dataset_name, rows in ((Dataset.Kind.REFERENCE, "train", train), (Dataset.Kind.EVALUATION, "holdout", holdout)):
        if rows is not None:
            X, y = rows
            services.dataset_register(deployment=deployment, kind=kind, name=dataset_name, X=X, y=y, by=by)
    deployment.refresh_from_db()
    return deployment


def worker_env(base: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker process on the test database, broker and a media root under `base`."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**connection.settings_dict)
    env["MEDIA_ROOT"] = str(base / "media")
    env["REDIS_URL"] = settings.CELERY_BROKER_URL
    # Alert delivery in tests goes to receivers on 127.0.0.1 (tests/workers/test_delivery.py).
    env.setdefault("ALERT_ALLOW_PRIVATE_URLS", "true")
    env.update(extra)
    return env


def spawn_worker(
    *, base: Path, log_name: str, args: list[str], env: dict[str, str], own_session: bool = False
) -> tuple[subprocess.Popen[bytes], Any]:
    """Start `celery -A dashboard worker` with `args`, its output in base/log_name. Returns (process, log file).
    own_session: in a process group of its own, so os.killpg(pid, SIGKILL) takes the worker and its pool child
    at once, as when a machine dies."""
    log = open(base / log_name, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--loglevel=INFO", *args,
         "--concurrency=1", "--pool=prefork", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=own_session,
    )
    return process, log
