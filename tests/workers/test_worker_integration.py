"""Through the real broker to a real `celery worker` process on the test database."""

from __future__ import annotations

import pytest

from monitoring import services
from monitoring.models import EvaluationRun, MaintenanceJob
from tests.builders import spawn_worker, worker_env
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


@pytest.fixture
def second_worker(celery_worker_process, tmp_path_factory):
    """Another real worker process beside the session's one, as on a second machine (same broker, database, media)."""
    from dashboard.celery import app

    base = tmp_path_factory.getbasetemp()
    process, log = spawn_worker(
        base=base, log_name="celery-second-worker.log", args=["-n", "second@%h", "--queues=default"],
        env=worker_env(base),
    )
    wait_for(lambda: process.poll() is None and len(app.control.ping(timeout=1.0)) >= 2, timeout=60)
    yield process
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_two_workers_share_the_fan_out_and_never_evaluate_one_deployment_at_once(
    second_worker, deployment, mlp_deployment
):
    # Each deployment is sent three times, as when two beats or a retry overlap with the schedule.
    for _ in range(3):
        evaluate_all_task.delay()

    def finished() -> list[EvaluationRun]:
        runs = list(EvaluationRun.objects.filter(status=EvaluationRun.Status.SUCCEEDED).select_related("deployment"))
        return runs if {run.deployment.slug for run in runs} == {"tumour", "digits"} else []

    wait_for(finished, timeout=120)
    wait_for(lambda: not EvaluationRun.objects.filter(status=EvaluationRun.Status.RUNNING).exists(), timeout=120)
    # The per-deployment lock: whatever the number of workers, one deployment's runs never overlap in time.
    for slug in ("tumour", "digits"):
        runs = sorted(EvaluationRun.objects.filter(deployment__slug=slug), key=lambda run: run.created_at)
        assert all(a.finished_at <= b.created_at for a, b in zip(runs, runs[1:])), [(r.created_at, r.finished_at) for r in runs]


def test_the_worker_indexes_large_batches_and_rejects_a_late_duplicate(celery_worker_process, deployment, deferred):
    from monitoring.models import Alert, PredictionBatch
    from tests.monitoring.services.ingestion_helpers import prediction_rows

    # Committed at once (no surrounding transaction): each store's on_commit queues the indexer.
    first = services.predictions_ingest(deployment=deployment, rows=prediction_rows(50))
    second = services.predictions_ingest(deployment=deployment, rows=prediction_rows(50, start=50))
    late = services.predictions_ingest(deployment=deployment, rows=prediction_rows(10, start=95))

    wait_for(lambda: not PredictionBatch.objects.filter(state=PredictionBatch.State.PENDING).exists())

    states = dict(PredictionBatch.objects.values_list("pk", "state"))
    assert states[first.batch_id] == states[second.batch_id] == "indexed"
    assert states[late.batch_id] == "rejected"
    assert deployment.predictions.count() == 100
    assert Alert.objects.filter(deployment=deployment, kind=Alert.Kind.BATCH_REJECTED).exists()
