"""The Celery tasks run in-process (`apply`): what they do with ids, the per-deployment lock, and failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import TimeLimitExceeded
from django.utils import timezone

from monitoring import services
from monitoring.models import Alert, DriftReport, EvaluationRun, MaintenanceJob
from tests.workers.conftest import holdout, ingest_traffic
from workers.tasks import (
    _redis,
    check_drift_task,
    deployment_lock,
    evaluate_deployment_task,
    run_maintenance_job_task,
)

pytestmark = pytest.mark.django_db


def test_the_evaluation_task_evaluates_the_deployment_by_id(deployment):
    evaluate_deployment_task.apply(args=[deployment.pk]).get()

    run = EvaluationRun.objects.get()
    assert run.status == EvaluationRun.Status.SUCCEEDED and run.version == deployment.active_version()
    assert not _redis().exists(f"watchkeeper:lock:evaluate:{deployment.pk}")  # released


def test_a_deployment_being_evaluated_by_another_worker_is_skipped(deployment):
    with deployment_lock("evaluate", deployment.pk) as acquired:
        assert acquired

        evaluate_deployment_task.apply(args=[deployment.pk]).get()

    assert not EvaluationRun.objects.exists()


def test_the_drift_task_checks_the_deployments_last_window(deployment):
    X, y = holdout()
    ingest_traffic(deployment, X[:60], predicted=y[:60], start=timezone.now() - timedelta(hours=2))

    check_drift_task.apply(args=[deployment.pk]).get()

    assert DriftReport.objects.get().n_current == 60


def test_tasks_for_a_deleted_deployment_do_nothing(db):
    evaluate_deployment_task.apply(args=[999_999]).get()
    check_drift_task.apply(args=[999_999]).get()

    assert not EvaluationRun.objects.exists() and not DriftReport.objects.exists()


def test_a_job_killed_at_its_hard_time_limit_is_marked_failed(deployment, operator):
    job = services.job_queue(version=deployment.active_version(), kind=MaintenanceJob.Kind.RETRAIN, by=operator)
    MaintenanceJob.objects.filter(pk=job.pk).update(status=MaintenanceJob.Status.RUNNING, started_at=timezone.now())

    # What the worker's parent process calls when it kills the child at time_limit.
    run_maintenance_job_task.on_failure(TimeLimitExceeded(3600), "task-id", (job.pk,), {}, None)

    job.refresh_from_db()
    assert job.status == MaintenanceJob.Status.FAILED and "ran past its time limit (3600 s)" in job.error
    assert Alert.objects.get().kind == Alert.Kind.JOB_FAILED
