"""Through the real broker to a real `celery worker` process on the test database."""

from __future__ import annotations

import pytest

from monitoring import services
from monitoring.models import EvaluationRun, MaintenanceJob
from tests.conftest import wait_for
from workers.tasks import evaluate_all_task, evaluate_deployment_task

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_worker_evaluates_a_deployment_and_runs_a_compression_job(
    celery_worker_process, deployment, mlp_deployment, operator
):
    evaluate_deployment_task.delay(deployment.pk)
    # Committed at once (no surrounding transaction), so job_queue's on_commit sends the task to the maintenance queue.
    job = services.job_queue(
        version=mlp_deployment.active_version(), kind=MaintenanceJob.Kind.COMPRESS_INT8, by=operator
    )

    run = wait_for(
        lambda: EvaluationRun.objects.filter(deployment=deployment, status=EvaluationRun.Status.SUCCEEDED).first()
    )
    job = wait_for(lambda: MaintenanceJob.objects.filter(pk=job.pk, status__in=["succeeded", "failed"]).first())

    assert run.metrics["accuracy"] > 0.9 and run.job is None
    assert job.status == MaintenanceJob.Status.SUCCEEDED, job.error
    assert job.candidate.size_bytes < mlp_deployment.active_version().size_bytes
    assert job.evaluations.filter(status=EvaluationRun.Status.SUCCEEDED).count() == 2


def test_the_scheduled_fan_out_evaluates_every_served_deployment(celery_worker_process, deployment, mlp_deployment):
    evaluate_all_task.delay()

    def evaluated() -> set[str]:
        runs = EvaluationRun.objects.filter(status=EvaluationRun.Status.SUCCEEDED)
        return set(runs.values_list("deployment__slug", flat=True))

    wait_for(lambda: evaluated() == {"tumour", "digits"})
