"""Maintenance jobs: turn a version into a candidate (int8 compression or a retrain), then compare it with the
active version on the same rows, so an approver can decide.

The job's row is its state. `run_job` claims it with a conditional update, so a redelivered task does nothing;
between steps it writes progress and stops quietly if someone cancelled the job. A job produces at most one
candidate: the candidate is registered and linked to the job in one transaction that first looks for one.
A cancel before that point leaves nothing behind; a cancel after it stops the comparison, and the candidate
stays for an approver to reject.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from monitoring import selectors, services
from monitoring.models import Alert, EvaluationRun, MaintenanceJob, ModelVersion
from monitoring.storage import BlobIntegrityError, BlobMissingError, sha256_hex
from workers.compression.quantize import NotApplicable, quantize_int8_dynamic
from workers.evaluation import evaluate_versions
from workers.retrain import RetrainError, retrain
from workers.training import RecipeError

logger = logging.getLogger(__name__)

Status = MaintenanceJob.Status
Kind = MaintenanceJob.Kind

# A retrain learns from the reference data plus the last month of labelled traffic: recent enough to follow
# the world, long enough to hold every class.
RETRAIN_PRODUCTION_DAYS = 30
# The maintenance task's hard time limit (workers/tasks.py). A job still "running" after it has lost its
# worker (the process was killed), so a redelivery of its task may take it over.
STALE_AFTER = timedelta(seconds=3600)


class JobCancelled(Exception):
    """Someone cancelled the job while it ran; stop without producing anything more."""


class JobFailed(Exception):
    """A step failed in a way the user should read about. The message is user-facing."""


def _plain_words(exc: Exception) -> str:
    if isinstance(exc, NotApplicable):
        return exc.reason
    if isinstance(exc, services.ServiceError):
        return f"The new model was not accepted: {exc.message}"
    if isinstance(exc, (BlobIntegrityError, BlobMissingError)):
        return f"A stored file cannot be used: {exc}."
    if isinstance(exc, SoftTimeLimitExceeded):
        return "The job ran past its time limit and was stopped."
    return str(exc)


KNOWN_FAILURES = (
    NotApplicable, RecipeError, RetrainError, services.ServiceError, BlobIntegrityError, BlobMissingError,
    JobFailed, SoftTimeLimitExceeded,
)


def run_job(job_id: int) -> None:
    """Run a queued maintenance job to the end. Calling it again for the same job does nothing."""
    now = timezone.now()
    claimable = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, started_at__lt=now - STALE_AFTER)
    claimed = MaintenanceJob.objects.filter(Q(id=job_id) & claimable).update(
        status=Status.RUNNING, started_at=now, progress=0, progress_message="Starting", error=""
    )
    if claimed != 1:
        return
    job = MaintenanceJob.objects.select_related("deployment", "source_version", "candidate").get(pk=job_id)
    try:
        candidate = job.candidate or ModelVersion.objects.filter(created_by_job=job).first()
        if candidate is None:
            candidate = _make_candidate(job)
        _compare(job, candidate)
        _succeed(job, candidate)
    except JobCancelled:
        logger.info("job %s was cancelled", job_id)
    except KNOWN_FAILURES as exc:
        job_fail(job_id=job_id, error=_plain_words(exc))
    except Exception as exc:
        job_fail(job_id=job_id, error=f"Unexpected error: {type(exc).__name__}: {exc}")
        raise


def job_fail(*, job_id: int, error: str) -> bool:
    """Mark a running job failed and open a warning for it. False when it was no longer running."""
    failed = MaintenanceJob.objects.filter(pk=job_id, status=Status.RUNNING).update(
        status=Status.FAILED, error=error[:2000], progress_message="Failed", finished_at=timezone.now()
    )
    if not failed:
        return False
    job = MaintenanceJob.objects.select_related("deployment", "source_version").get(pk=job_id)
    services.alert_raise(
        deployment=job.deployment,
        kind=Alert.Kind.JOB_FAILED,
        # One alert per job: a second failing job is news, not a repeat.
        dedup_key=f"job:{job.pk}",
        severity=Alert.Severity.WARNING,
        title=f"{job.get_kind_display()} of v{job.source_version.number} failed",
        message=error,
    )
    return True


def _step(job: MaintenanceJob, progress: int, message: str) -> None:
    """Record progress, unless the job was cancelled meanwhile: then stop."""
    if not MaintenanceJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(
        progress=progress, progress_message=message[:300]
    ):
        raise JobCancelled


def _make_candidate(job: MaintenanceJob) -> ModelVersion:
    source = job.source_version
    if job.kind == Kind.COMPRESS_INT8:
        _step(job, 5, f"Reading v{source.number}")
        data = services.blob_read(source.sha256)
        _step(job, 15, "Quantizing weights to int8")
        new_bytes, report = quantize_int8_dynamic(data)
        # The recipe is how the model was trained; a compressed copy can be retrained the same way.
        recipe = services.blob_read(source.recipe_sha256) if source.recipe_sha256 else None
        notes = (
            f"Int8 dynamic quantization of v{source.number}: {report['size_before']:,} → "
            f"{report['size_after']:,} bytes ({report['size_ratio']:.0%}), {report['quantized_nodes']} weight node(s)."
        )
    elif job.kind == Kind.RETRAIN:
        if not source.recipe_sha256:
            raise JobFailed(f"v{source.number} has no training recipe, so it cannot be retrained.")
        _step(job, 5, "Collecting training data")
        X, y, described = _training_data(job)
        _step(job, 20, f"Training on {len(X):,} rows ({described})")
        new_bytes, recipe, report = retrain(
            recipe=services.blob_read(source.recipe_sha256), X=X, y=y,
            feature_names=job.deployment.feature_names, class_labels=job.deployment.class_labels,
        )
        notes = (
            f"Retrained from v{source.number}'s recipe on {described}; "
            f"training accuracy {report['train_accuracy']:.3f}."
        )
        if sha256_hex(new_bytes) == source.sha256:
            notes += f" The result is identical to v{source.number}: the training data has not changed."
    else:
        raise JobFailed(f"Unknown job kind {job.kind!r}.")
    _step(job, 55, "Registering the candidate")
    return _register(job, new_bytes, recipe=recipe, notes=notes)


def _training_data(job: MaintenanceJob) -> tuple[np.ndarray, np.ndarray, str]:
    """The labelled reference rows plus the labelled production rows of the last RETRAIN_PRODUCTION_DAYS days."""
    deployment = job.deployment
    parts_X, parts_y, described = [], [], []
    if deployment.reference_dataset is not None:
        X, y = services.dataset_load(deployment.reference_dataset)
        if y is not None:
            parts_X.append(np.asarray(X, dtype=np.float64))
            parts_y.append(np.asarray(y).astype(str))
            described.append(f"{len(X):,} reference rows")
    end = timezone.now()
    window = selectors.production_window(
        deployment=deployment, start=end - timedelta(days=RETRAIN_PRODUCTION_DAYS), end=end, labelled_only=True
    )
    if len(window.X):
        parts_X.append(window.X)
        parts_y.append(window.labels)
        described.append(f"{len(window.X):,} labelled predictions from the last {RETRAIN_PRODUCTION_DAYS} days")
    if not parts_X:
        raise RetrainError(
            "There is no labelled data to retrain on: the reference dataset has no labels and no labelled "
            f"predictions arrived in the last {RETRAIN_PRODUCTION_DAYS} days."
        )
    return np.concatenate(parts_X), np.concatenate(parts_y), " and ".join(described)


def _register(job: MaintenanceJob, data: bytes, *, recipe: bytes | None, notes: str) -> ModelVersion:
    with transaction.atomic():
        # The lock orders this against a cancel and against a second run of the same job.
        locked = MaintenanceJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != Status.RUNNING:
            raise JobCancelled
        existing = locked.candidate or ModelVersion.objects.filter(created_by_job=job).first()
        if existing is not None:
            return existing
        candidate = services.version_register(
            deployment=job.deployment, data=data, by=None, origin=job.kind, parent=job.source_version, job=job,
            recipe=recipe, notes=notes, activate_if_first=False,
        )
        MaintenanceJob.objects.filter(pk=job.pk).update(candidate=candidate)
    job.candidate = candidate
    return candidate


def _compare(job: MaintenanceJob, candidate: ModelVersion) -> None:
    """Evaluate the candidate and the active version on the same rows: the evaluation set, then recent traffic."""
    deployment = job.deployment
    active = deployment.active_version()
    versions = [candidate] + ([active] if active is not None and active.pk != candidate.pk else [])
    names = " and ".join(f"v{v.number}" for v in versions)
    _step(job, 65, f"Evaluating {names} on the evaluation set")
    runs = evaluate_versions(versions=versions, source=EvaluationRun.Source.EVALUATION_SET, job=job, raise_alerts=False)
    _step(job, 85, f"Evaluating {names} on labelled production traffic")
    end = timezone.now()
    runs += evaluate_versions(
        versions=versions, source=EvaluationRun.Source.PRODUCTION, job=job, raise_alerts=False,
        window_start=end - timedelta(days=deployment.evaluation_window_days), window_end=end,
    )
    for run in runs:
        if run.status == EvaluationRun.Status.FAILED:
            raise JobFailed(
                f"v{candidate.number} was registered, but evaluating v{run.version.number} on the "
                f"{run.get_source_display().lower()} failed: {run.error}"
            )


def _succeed(job: MaintenanceJob, candidate: ModelVersion) -> None:
    # Conditional, like every step: a cancel that arrived during the last evaluation wins.
    MaintenanceJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(
        status=Status.SUCCEEDED,
        progress=100,
        progress_message=f"v{candidate.number} is ready for review",
        finished_at=timezone.now(),
    )
