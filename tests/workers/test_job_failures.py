"""Jobs that behave when things go wrong: a real worker process killed mid-job, a cancel through the real queue,
and the reaper for a worker that vanished."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from monitoring import services
from monitoring.models import Alert, MaintenanceJob, ModelVersion
from tests.conftest import wait_for
from workers.jobs import STALE_AFTER, jobs_reap

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
Kind, Status = MaintenanceJob.Kind, MaintenanceJob.Status


def _pool_children(pid: int) -> list[int]:
    """The prefork pool's processes: the worker's children, read from /proc."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def _searching(job: MaintenanceJob) -> MaintenanceJob | None:
    # The retrain's hyperparameter search runs trial after trial until its budget is spent: a long step to kill.
    return MaintenanceJob.objects.filter(pk=job.pk, progress_message__startswith="Hyperparameter search").first()


def test_a_worker_process_killed_mid_job_leaves_the_job_failed_and_the_next_job_runs(
    celery_worker_process, mlp_deployment, operator
):
    versions = ModelVersion.objects.count()
    job = services.job_queue(
        version=mlp_deployment.active_version(), kind=Kind.RETRAIN, by=operator, params={"search_seconds": 120}
    )
    wait_for(lambda: _searching(job), timeout=120)
    (child,) = _pool_children(celery_worker_process.pid)

    os.kill(child, signal.SIGKILL)

    # Celery's main process logs WorkerLostError and acks the task, but the task's on_failure ran in the dead
    # child, so nothing marks the job: it is still "running", and its heartbeat thread died with the child.
    wait_for(lambda: not Path(f"/proc/{child}").exists(), timeout=30)
    assert MaintenanceJob.objects.get(pk=job.pk).status == Status.RUNNING
    # The beat reaper fails it once the heartbeat is STALE_AFTER old; with the process known dead, the test does
    # not wait 90 s for that and reaps at once.
    assert jobs_reap(stale_after=timedelta(0)) == [job.pk]
    job.refresh_from_db()
    assert job.status == Status.FAILED and "worker running this job stopped" in job.error
    assert job.candidate is None and ModelVersion.objects.count() == versions
    assert Alert.objects.filter(kind=Alert.Kind.JOB_FAILED, dedup_key=f"job:{job.pk}").exists()
    # The worker lives on with a fresh child, and the next job runs to the end.
    follow_up = services.job_queue(version=mlp_deployment.active_version(), kind=Kind.COMPRESS_INT8, by=operator)
    follow_up = wait_for(
        lambda: MaintenanceJob.objects.filter(pk=follow_up.pk, status__in=["succeeded", "failed"]).first(), timeout=120
    )
    assert follow_up.status == Status.SUCCEEDED, follow_up.error
    assert ModelVersion.objects.filter(created_by_job=follow_up).count() == 1


def test_cancelling_a_running_job_stops_it_between_steps(celery_worker_process, mlp_deployment, operator):
    versions = ModelVersion.objects.count()
    job = services.job_queue(
        version=mlp_deployment.active_version(), kind=Kind.RETRAIN, by=operator, params={"search_seconds": 120}
    )
    wait_for(lambda: _searching(job), timeout=120)

    services.job_cancel(job=job, by=operator)

    # The next trial's progress update finds the job cancelled and the worker stops; it takes the next task.
    follow_up = services.job_queue(version=mlp_deployment.active_version(), kind=Kind.COMPRESS_INT8, by=operator)
    wait_for(lambda: MaintenanceJob.objects.filter(pk=follow_up.pk, status="succeeded").first(), timeout=120)
    job.refresh_from_db()
    assert job.status == Status.CANCELLED and job.candidate is None and job.error == ""
    assert ModelVersion.objects.count() == versions + 1  # only the follow-up's candidate


def test_the_reaper_fails_a_running_job_whose_heartbeat_stopped(mlp_deployment, operator):
    job = MaintenanceJob.objects.create(
        deployment=mlp_deployment, source_version=mlp_deployment.active_version(), kind=Kind.COMPRESS_INT8,
        status=Status.RUNNING, started_at=timezone.now() - timedelta(minutes=10),
        heartbeat_at=timezone.now() - STALE_AFTER - timedelta(seconds=5),
    )
    alive = MaintenanceJob.objects.create(
        deployment=mlp_deployment, source_version=mlp_deployment.active_version(), kind=Kind.COMPRESS_INT8,
        status=Status.RUNNING, started_at=timezone.now() - timedelta(minutes=10), heartbeat_at=timezone.now(),
    )

    assert jobs_reap() == [job.pk]

    job.refresh_from_db()
    alive.refresh_from_db()
    assert job.status == Status.FAILED and "worker running this job stopped" in job.error
    assert alive.status == Status.RUNNING
    assert jobs_reap() == []  # idempotent
