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
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from monitoring import selectors, services
from monitoring.maintenance.applicability import method_for
from monitoring.maintenance.compression.base import NotApplicable
from monitoring.maintenance.compression.methods import METHODS
from monitoring.maintenance.wording import describe_trial
from monitoring.models import Dataset, EvaluationRun, MaintenanceJob, ModelVersion
from monitoring.storage import BlobIntegrityError, BlobMissingError, sha256_hex
from workers.distill import distill
from workers.evaluation import evaluate_versions
from workers.retrain import RetrainError, retrain
from workers.search import find_smaller
from workers.training import RecipeError

logger = logging.getLogger(__name__)

Status = MaintenanceJob.Status
Kind = MaintenanceJob.Kind

# A retrain learns from the reference data plus the last month of labelled traffic: recent enough to follow
# the world, long enough to hold every class. The most recent evaluation_window_days of it are held out: the
# approval page compares the candidate on exactly those rows, which it never saw.
RETRAIN_PRODUCTION_DAYS = 30
# A running job writes heartbeat_at every HEARTBEAT_SECONDS from a thread beside the work. Six missed beats mean
# its worker is gone (killed, out of memory, machine restarted): the reaper fails the job, and a redelivered task
# may take it over. 90 s is far above any pause of a live process, and short enough that nobody waits long.
HEARTBEAT_SECONDS = 15
STALE_AFTER = timedelta(seconds=90)
# Distillation's transfer set: the reference rows plus this many recent production inputs (labels not needed).
DISTILL_PRODUCTION_ROWS = 5000


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
    # A queued job, or a running one whose worker stopped beating: its redelivered task takes it over.
    job = services.job_start(job_id=job_id, stale_after=STALE_AFTER)
    if job is None:
        return
    try:
        with _heartbeat(job_id):
            candidate = job.candidate or ModelVersion.objects.filter(created_by_job=job).first()
            if candidate is None:
                candidate = _make_candidate(job)
            _compare(job, candidate)
            _succeed(job, candidate)
    except JobCancelled:
        logger.info("job %s was cancelled", job_id)
    except KNOWN_FAILURES as exc:
        services.job_fail(job_id=job_id, error=_plain_words(exc))
    except Exception as exc:
        services.job_fail(job_id=job_id, error=f"Unexpected error: {type(exc).__name__}: {exc}")
        raise


def jobs_reap(*, stale_after: timedelta = STALE_AFTER) -> list[int]:
    """Fail the running jobs whose heartbeat stopped (their worker died); return their ids. Run by beat."""
    cutoff = timezone.now() - stale_after
    stale = MaintenanceJob.objects.filter(status=Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    reaped = []
    for job_id in stale.values_list("pk", flat=True):
        if services.job_fail(
            job_id=job_id,
            error="The worker running this job stopped without finishing it (its process was killed or its machine "
            "restarted). Nothing more will happen; queue the job again.",
        ):
            reaped.append(job_id)
    return reaped


@contextmanager
def _heartbeat(job_id: int):
    """Beat every HEARTBEAT_SECONDS while the block runs, from a thread with its own database connection.

    Inside a caller's transaction (tests calling run_job directly) the thread could not see the uncommitted job
    row and would wait on its lock, so there the steps' own updates are the only beats.
    """
    if connection.in_atomic_block:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(HEARTBEAT_SECONDS):
                services.job_heartbeat(job_id=job_id)
        finally:
            connection.close()  # this thread's connection, not the job's

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_SECONDS)


def _step(job: MaintenanceJob, progress: int, message: str) -> None:
    """Record progress (a heartbeat too), unless the job was cancelled meanwhile: then stop."""
    if not services.job_progress(job=job, progress=progress, message=message):
        raise JobCancelled


def _record(job: MaintenanceJob, result: dict) -> None:
    services.job_result_record(job=job, result=result)


def _make_candidate(job: MaintenanceJob) -> ModelVersion:
    source = job.source_version
    # The recipe is how the model was trained; a compressed copy can be retrained the same way.
    recipe = services.blob_read(source.recipe_sha256) if source.recipe_sha256 else None
    method = method_for(job.kind)
    # Compression and the search change weights of a model trained elsewhere; they learn from no labelled rows.
    training_rows: dict = {}
    if method is not None:
        _step(job, 5, f"Reading v{source.number}")
        data = services.blob_read(source.sha256)
        calibration = _reference_inputs(job) if METHODS[method].needs_calibration else None
        _step(job, 15, f"{METHODS[method].label} of v{source.number}")
        new_bytes, report = METHODS[method].run(data, calibration, **job.params)
        _record(job, {"compression": report.as_dict()})
        notes = (
            f"{METHODS[method].label} of v{source.number}: {report.size_before:,} → {report.size_after:,} bytes "
            f"({report.size_ratio:.0%}). {_describe_details(report.details)}"
        )
    elif job.kind == Kind.RETRAIN:
        if not source.recipe_sha256:
            raise JobFailed(f"v{source.number} has no training recipe, so it cannot be retrained.")
        _step(job, 5, "Collecting training data")
        X, y, described, training_rows = _training_data(job)
        _step(job, 20, f"Training on {len(X):,} rows ({described})")
        new_bytes, recipe, report = retrain(
            recipe=recipe, X=X, y=y,
            feature_names=job.deployment.feature_names, class_labels=job.deployment.class_labels,
            search_seconds=job.params.get("search_seconds", 0), tick=lambda message: _step(job, 30, message),
        )
        _record(job, {"retrain": report | {"training_rows": training_rows}})
        notes = (
            f"Retrained from v{source.number}'s recipe ({report['how']}) on {described}; "
            f"training accuracy {report['train_accuracy']:.3f}."
        )
        if sha256_hex(new_bytes) == source.sha256:
            notes += f" The result is identical to v{source.number}: the training data has not changed."
    elif job.kind == Kind.DISTILL:
        _step(job, 5, "Collecting the teacher's inputs")
        X, described, training_rows = _transfer_inputs(job)
        params = {"temperature": 2.0} | job.params
        _step(job, 20, f"Training a student on the teacher's answers over {described} (T = {params['temperature']:g})")
        new_bytes, report = distill(
            services.blob_read(source.sha256), X, feature_names=job.deployment.feature_names, **params
        )
        recipe = None  # the student is trained from the teacher, not from a recipe of its own
        _record(job, {"distill": {**report.__dict__, "size_ratio": report.size_ratio}})
        notes = (
            f"Distilled from v{source.number} into a {report.hidden_units}-unit MLP at T = {report.temperature:g} on "
            f"{described}: {report.size_before:,} → {report.size_after:,} bytes ({report.size_ratio:.1%}); "
            f"KL at T {report.kl_at_temperature:.4f} nats, agrees with the teacher on {report.agreement:.1%} of them."
        )
    elif job.kind == Kind.FIND_SMALLER:
        new_bytes, notes = _search(job)
    else:
        raise JobFailed(f"Unknown job kind {job.kind!r}.")
    _step(job, 55, "Registering the candidate")
    return _register(job, new_bytes, recipe=recipe, notes=notes, training_rows=training_rows)


def _describe_details(details: dict) -> str:
    return "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in details.items())


def _search(job: MaintenanceJob) -> tuple[bytes, str]:
    deployment, source = job.deployment, job.source_version
    tolerance = job.params.get("tolerance", 1.0)
    _step(job, 5, "Loading the evaluation set")
    if deployment.evaluation_dataset is None:
        raise JobFailed("The search needs the labelled evaluation set; this deployment has none.")
    X_eval, y_eval = services.dataset_load(deployment.evaluation_dataset)
    if y_eval is None:
        raise JobFailed("The evaluation set has no labels, so accuracy cannot be kept within a tolerance.")
    result, outputs = find_smaller(
        services.blob_read(source.sha256), X_eval=X_eval, y_eval=y_eval, labels=list(deployment.class_labels),
        calibration=_reference_inputs(job), feature_names=deployment.feature_names, tolerance=tolerance,
        tick=lambda message, share: _step(job, 10 + int(40 * share), message),
    )
    _record(job, {"search": result.as_dict()})
    if result.best is None:
        raise JobFailed(
            f"No smaller model kept macro F1 within {tolerance:g} points of v{source.number} "
            f"({result.baseline.f1_macro:.3f}); {len(result.trials)} settings tried. See the job's result for each."
        )
    best = result.trials[result.best]
    notes = (
        f"Smallest of {len(result.front)} candidate(s) on the size × latency × F1 front, found by searching "
        f"{len(result.trials)} settings within {tolerance:g} F1 point(s) of v{source.number}: "
        f"{describe_trial(best.method, best.params)}, {result.baseline.size_bytes:,} → {best.size_bytes:,} bytes, "
        f"F1 {result.baseline.f1_macro:.3f} → {best.f1_macro:.3f}."
    )
    return outputs[result.best], notes


def _reference_inputs(job: MaintenanceJob) -> np.ndarray | None:
    dataset = job.deployment.reference_dataset
    if dataset is None:
        return None
    X, _ = services.dataset_load(dataset)
    return np.asarray(X, dtype=np.float32)


def _training_windows(job: MaintenanceJob) -> tuple[datetime, datetime, datetime]:
    """(start, end of training, now): production rows from `start` to `end` may be learnt from; the rows after
    `end` are held out for the comparison (the deployment's evaluation window)."""
    now = timezone.now()
    held_out_from = now - timedelta(days=job.deployment.evaluation_window_days)
    return now - timedelta(days=RETRAIN_PRODUCTION_DAYS), held_out_from, now


def _training_record(*, reference: Dataset | None, start: datetime, end: datetime, n_rows: int) -> dict:
    """ModelVersion.training_rows: what a job trained the candidate on."""
    return {
        "reference_dataset": reference.pk if reference is not None else None,
        "production_start": start.isoformat(), "production_end": end.isoformat(), "n_rows": n_rows,
    }


def _window_words(start: datetime, end: datetime, now: datetime) -> str:
    held = (now - end).days
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC (the last {held} days held out for the comparison)"


def _transfer_inputs(job: MaintenanceJob) -> tuple[np.ndarray, str, dict]:
    """Reference inputs plus the most recent production inputs before the held-out days: the teacher labels
    them all."""
    parts, described = [], []
    reference_dataset = job.deployment.reference_dataset
    reference = _reference_inputs(job)
    if reference is not None:
        parts.append(reference)
        described.append(f"{len(reference):,} reference rows")
    start, end, now = _training_windows(job)
    window = selectors.production_window(deployment=job.deployment, start=start, end=end)
    if len(window.X):
        recent = window.X[-DISTILL_PRODUCTION_ROWS:].astype(np.float32)
        parts.append(recent)
        described.append(f"{len(recent):,} production inputs from {_window_words(start, end, now)}")
    if not parts:
        raise JobFailed(
            "Distillation needs inputs to learn from: there is no reference dataset and no traffic before the "
            f"last {job.deployment.evaluation_window_days} days, which are held out for the comparison."
        )
    X = np.concatenate(parts)
    record = _training_record(reference=reference_dataset if reference is not None else None, start=start, end=end, n_rows=len(X))
    return X, " and ".join(described), record


def _training_data(job: MaintenanceJob) -> tuple[np.ndarray, np.ndarray, str, dict]:
    """The labelled reference rows plus the labelled production rows of the last RETRAIN_PRODUCTION_DAYS days,
    except the held-out last evaluation_window_days (see _training_windows)."""
    deployment = job.deployment
    parts_X, parts_y, described = [], [], []
    reference = None
    if deployment.reference_dataset is not None:
        X, y = services.dataset_load(deployment.reference_dataset)
        if y is not None:
            reference = deployment.reference_dataset
            parts_X.append(np.asarray(X, dtype=np.float64))
            parts_y.append(np.asarray(y).astype(str))
            described.append(f"{len(X):,} reference rows")
    start, end, now = _training_windows(job)
    window = selectors.production_window(deployment=deployment, start=start, end=end, labelled_only=True)
    if len(window.X):
        parts_X.append(window.X)
        parts_y.append(window.labels)
        described.append(f"{len(window.X):,} labelled predictions from {_window_words(start, end, now)}")
    if not parts_X:
        raise RetrainError(
            "There is no labelled data to retrain on: the reference dataset has no labels and no labelled "
            f"predictions arrived in the {RETRAIN_PRODUCTION_DAYS} days before the last "
            f"{deployment.evaluation_window_days}, which are held out for the comparison."
        )
    X_all = np.concatenate(parts_X)
    record = _training_record(reference=reference, start=start, end=end, n_rows=len(X_all))
    return X_all, np.concatenate(parts_y), " and ".join(described), record


def _register(
    job: MaintenanceJob, data: bytes, *, recipe: bytes | None, notes: str, training_rows: dict
) -> ModelVersion:
    candidate = services.job_candidate_register(
        job=job, data=data, recipe=recipe, notes=notes, training_rows=training_rows
    )
    if candidate is None:
        raise JobCancelled
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
    start = end - timedelta(days=deployment.evaluation_window_days)
    trained = selectors.trained_until(versions)  # never score a model on rows it learnt from
    runs += evaluate_versions(
        versions=versions, source=EvaluationRun.Source.PRODUCTION, job=job, raise_alerts=False,
        window_start=max(start, trained) if trained else start, window_end=end,
    )
    for run in runs:
        if run.status == EvaluationRun.Status.FAILED:
            raise JobFailed(
                f"v{candidate.number} was registered, but evaluating v{run.version.number} on the "
                f"{run.get_source_display().lower()} failed: {run.error}"
            )


def _succeed(job: MaintenanceJob, candidate: ModelVersion) -> None:
    # Conditional, like every step: a cancel that arrived during the last evaluation wins.
    services.job_succeed(job=job, candidate=candidate)
