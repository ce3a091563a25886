"""Maintenance jobs: queued (refusing what cannot work), cancelled, and their states as a worker runs them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from monitoring import alert_keys, background
from monitoring.models import Alert, MaintenanceJob, ModelVersion
from monitoring.services.alerts import alert_raise, job_outcome_notify
from monitoring.services.audit import audit_record
from monitoring.services.errors import Conflict, ValidationFailed
from monitoring.services.versions import version_register


@transaction.atomic
def job_queue(
    *, version: ModelVersion, kind: str, by: AbstractBaseUser | None, params: dict[str, Any] | None = None
) -> MaintenanceJob:
    if kind not in MaintenanceJob.Kind.values:
        raise ValidationFailed(f"Unknown job kind {kind!r}; choose one of {MaintenanceJob.Kind.values}.")
    from monitoring import selectors

    # Imported here: it loads the compression methods (onnxruntime.quantization, scikit-learn), which a web
    # process that never queues a job should not pay for.
    from monitoring.maintenance.applicability import BadParams, clean_params

    # Refuse what cannot work, from what is known now (graph, recipe, datasets): never queue a job bound to fail.
    option = next(o for o in selectors.job_options(version=version) if o.kind == kind)
    if not option.applicable:
        raise ValidationFailed(f"Cannot queue {option.label.lower()} of v{version.number}: {option.reason}")
    try:
        params = clean_params(kind, params)
    except BadParams as exc:
        raise ValidationFailed(str(exc)) from None
    job = MaintenanceJob.objects.create(
        deployment=version.deployment, source_version=version, kind=kind, params=params, requested_by=by
    )
    audit_record(
        action="job.queue", actor=by, deployment=version.deployment, obj=job,
        after={"kind": kind, "source_version": version.number, "params": params},
    )
    background.enqueue("workers.tasks.run_maintenance_job_task", job.pk)
    return job


@transaction.atomic
def job_cancel(*, job: MaintenanceJob, by: AbstractBaseUser) -> MaintenanceJob:
    updated = MaintenanceJob.objects.filter(
        pk=job.pk, status__in=[MaintenanceJob.Status.QUEUED, MaintenanceJob.Status.RUNNING]
    ).update(status=MaintenanceJob.Status.CANCELLED, finished_at=timezone.now(), progress_message="Cancelled")
    if not updated:
        raise Conflict("The job has already finished.")
    job.refresh_from_db()
    audit_record(action="job.cancel", actor=by, deployment=job.deployment, obj=job, after={"status": job.status})
    return job


# The worker's side of a job (workers/jobs.py runs the work). Every state change is conditional on the state it
# expects, so a redelivered task, a cancel and a reaper can race without harm. Start, candidate, success and
# failure are audited; progress and heartbeats are not (they come every few seconds and decide nothing).


def job_start(*, job_id: int, stale_after: timedelta) -> MaintenanceJob | None:
    """Claim a queued job, or a running one whose worker stopped beating `stale_after` ago (its redelivered task
    takes it over). None when the job is not claimable: finished, cancelled, or running elsewhere."""
    now = timezone.now()
    claimable = Q(status=MaintenanceJob.Status.QUEUED) | Q(
        status=MaintenanceJob.Status.RUNNING, heartbeat_at__lt=now - stale_after
    )
    claimed = MaintenanceJob.objects.filter(Q(id=job_id) & claimable).update(
        status=MaintenanceJob.Status.RUNNING, started_at=now, heartbeat_at=now, progress=0,
        progress_message="Starting", error="",
    )
    if claimed != 1:
        return None
    job = MaintenanceJob.objects.select_related("deployment", "source_version", "candidate").get(pk=job_id)
    audit_record(
        action="job.start", actor=None, actor_label="worker", deployment=job.deployment, obj=job,
        after={"status": job.status},
    )
    return job


def job_heartbeat(*, job_id: int) -> bool:
    """The worker is still at it. False when the job is no longer running."""
    return bool(MaintenanceJob.objects.filter(pk=job_id, status=MaintenanceJob.Status.RUNNING).update(
        heartbeat_at=timezone.now()
    ))


def job_progress(*, job: MaintenanceJob, progress: int, message: str) -> bool:
    """Record progress (a heartbeat too). False when the job is no longer running: it was cancelled meanwhile."""
    return bool(MaintenanceJob.objects.filter(pk=job.pk, status=MaintenanceJob.Status.RUNNING).update(
        progress=progress, progress_message=message[:300], heartbeat_at=timezone.now()
    ))


def job_result_record(*, job: MaintenanceJob, result: dict[str, Any]) -> None:
    """What the method reported (sizes, the search's candidates …), shown on the job's page."""
    MaintenanceJob.objects.filter(pk=job.pk).update(result=result)
    job.result = result


def job_candidate_register(
    *, job: MaintenanceJob, data: bytes, recipe: bytes | None, notes: str, training_rows: dict[str, object] | None = None
) -> ModelVersion | None:
    """Register the job's output as a candidate version, once: a second run returns the first one's candidate.
    None when the job is no longer running (cancelled): nothing is registered."""
    with transaction.atomic():
        # The lock orders this against a cancel and against a second run of the same job.
        locked = MaintenanceJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != MaintenanceJob.Status.RUNNING:
            return None
        existing = locked.candidate or ModelVersion.objects.filter(created_by_job=job).first()
        if existing is not None:
            return existing
        candidate = version_register(
            deployment=job.deployment, data=data, by=None, origin=job.kind, parent=job.source_version, job=job,
            recipe=recipe, notes=notes, activate_if_first=False, training_rows=training_rows,
        )
        MaintenanceJob.objects.filter(pk=job.pk).update(candidate=candidate)
        audit_record(
            action="job.candidate", actor=None, actor_label="worker", deployment=job.deployment, obj=job,
            after={"candidate_version": candidate.number},
        )
    job.candidate = candidate
    return candidate


def job_succeed(*, job: MaintenanceJob, candidate: ModelVersion) -> bool:
    """The candidate is ready for review. False when a cancel that arrived during the last step won."""
    with transaction.atomic():
        succeeded = MaintenanceJob.objects.filter(pk=job.pk, status=MaintenanceJob.Status.RUNNING).update(
            status=MaintenanceJob.Status.SUCCEEDED,
            progress=100,
            progress_message=f"v{candidate.number} is ready for review",
            finished_at=timezone.now(),
        )
        if succeeded:
            audit_record(
                action="job.succeed", actor=None, actor_label="worker", deployment=job.deployment, obj=job,
                after={"status": MaintenanceJob.Status.SUCCEEDED, "candidate_version": candidate.number},
            )
            job.status = MaintenanceJob.Status.SUCCEEDED
            # The conditional update above lets this happen once per job, however often the task runs.
            job_outcome_notify(job=job, alert=Alert.objects.filter(
                deployment=job.deployment, dedup_key=alert_keys.candidate_waiting_key(version_id=candidate.pk)
            ).order_by("-created_at").first())
    return bool(succeeded)


def job_fail(*, job_id: int, error: str) -> bool:
    """Mark a running job failed and open a warning for it. False when it was no longer running."""
    with transaction.atomic():
        failed = MaintenanceJob.objects.filter(pk=job_id, status=MaintenanceJob.Status.RUNNING).update(
            status=MaintenanceJob.Status.FAILED, error=error[:2000], progress_message="Failed",
            finished_at=timezone.now(),
        )
        if not failed:
            return False
        job = MaintenanceJob.objects.select_related("deployment", "source_version").get(pk=job_id)
        audit_record(
            action="job.fail", actor=None, actor_label="worker", deployment=job.deployment, obj=job,
            after={"status": MaintenanceJob.Status.FAILED, "error": error[:2000]},
        )
    alert, created = alert_raise(
        deployment=job.deployment,
        kind=Alert.Kind.JOB_FAILED,
        # One alert per job: a second failing job is news, not a repeat.
        dedup_key=alert_keys.job_failed_key(job_id=job.pk),
        severity=Alert.Severity.WARNING,
        title=f"{job.get_kind_display()} of v{job.source_version.number} failed",
        message=error,
        figures={"job": job.pk, "kind": job.kind, "version": job.source_version.number,
                 "started_at": job.started_at.isoformat() if job.started_at else None},
    )
    if created:
        job_outcome_notify(job=job, alert=alert)
    return True
