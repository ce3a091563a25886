"""Maintenance jobs end to end in-process: a candidate, evaluated next to the active version on the same rows."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from monitoring import services
from monitoring.maintenance.compression.methods import METHODS
from monitoring.models import Alert, EvaluationRun, MaintenanceJob, ModelVersion
from tests.workers.conftest import holdout, ingest_traffic
from workers import jobs
from workers.jobs import run_job

pytestmark = pytest.mark.django_db
Kind, Status = MaintenanceJob.Kind, MaintenanceJob.Status


def _queue(deployment, kind: str, by) -> MaintenanceJob:
    # Under a test transaction nothing commits, so job_queue's on_commit enqueue never fires: we run the job here.
    return services.job_queue(version=deployment.active_version(), kind=kind, by=by)


def _reloaded(job: MaintenanceJob) -> MaintenanceJob:
    return MaintenanceJob.objects.select_related("candidate").get(pk=job.pk)


def test_compressing_an_mlp_gives_a_smaller_candidate_compared_on_the_same_rows(mlp_deployment, operator):
    active = mlp_deployment.active_version()
    job = _queue(mlp_deployment, Kind.COMPRESS_INT8, operator)

    run_job(job.pk)

    job = _reloaded(job)
    assert (job.status, job.progress, job.error) == (Status.SUCCEEDED, 100, "")
    assert job.finished_at is not None and f"v{job.candidate.number}" in job.progress_message
    candidate = job.candidate
    assert candidate.status == ModelVersion.Status.CANDIDATE and candidate.origin == Kind.COMPRESS_INT8
    assert candidate.parent == active and candidate.created_by_job == job
    assert candidate.size_bytes < 0.6 * active.size_bytes
    assert candidate.recipe_sha256 == active.recipe_sha256
    runs = {r.version_id: r for r in job.evaluations.all()}
    assert set(runs) == {candidate.pk, active.pk}
    assert {r.source for r in runs.values()} == {EvaluationRun.Source.EVALUATION_SET}
    assert runs[candidate.pk].n_rows == runs[active.pk].n_rows == mlp_deployment.evaluation_dataset.n_rows
    assert runs[candidate.pk].metrics["accuracy"] > 0.9
    assert runs[candidate.pk].metrics["size_bytes"] < runs[active.pk].metrics["size_bytes"]
    assert mlp_deployment.active_version() == active  # a candidate waits for approval
    assert not Alert.objects.exclude(kind=Alert.Kind.CANDIDATE_WAITING).exists()  # only "the candidate waits"


def test_compressing_a_linear_model_is_refused_before_it_is_queued_in_plain_words(deployment, operator):
    versions, jobs_before = ModelVersion.objects.count(), MaintenanceJob.objects.count()

    with pytest.raises(services.ValidationFailed) as caught:
        _queue(deployment, Kind.COMPRESS_INT8, operator)

    assert "does not apply to this model" in caught.value.message and "LinearClassifier" in caught.value.message
    assert (ModelVersion.objects.count(), MaintenanceJob.objects.count()) == (versions, jobs_before)
    assert not Alert.objects.exclude(kind=Alert.Kind.CANDIDATE_WAITING).exists()  # only "the candidate waits"


def test_retraining_learns_from_reference_and_older_traffic_and_is_compared_on_the_held_out_days(deployment, operator):
    X, y = holdout()
    now = timezone.now()
    ingest_traffic(deployment, X[:80], predicted=y[:80], labels=y[:80], start=now - timedelta(days=12), prefix="old")
    ingest_traffic(deployment, X[80:120], predicted=y[80:120], labels=y[80:120], start=now - timedelta(days=2), prefix="new")
    active = deployment.active_version()
    job = _queue(deployment, Kind.RETRAIN, operator)

    run_job(job.pk)

    job = _reloaded(job)
    assert job.status == Status.SUCCEEDED, job.error
    candidate = job.candidate
    assert candidate.origin == Kind.RETRAIN and candidate.parent == active and candidate.recipe_sha256
    assert "350 reference rows and 80 labelled predictions" in candidate.notes
    assert "the last 7 days held out for the comparison" in candidate.notes
    trained_until = datetime.fromisoformat(candidate.training_rows["production_end"])
    assert now - timedelta(days=7) <= trained_until < now - timedelta(days=7) + timedelta(minutes=5)
    assert candidate.training_rows["reference_dataset"] == deployment.reference_dataset_id
    assert candidate.training_rows["n_rows"] == 350 + 80
    # Compared on the 40 rows of the held-out days only: none of the 80 it learnt from.
    runs = list(job.evaluations.values_list("version_id", "source", "n_rows", "window_start"))
    assert sorted(run[:3] for run in runs) == sorted([
        (candidate.pk, EvaluationRun.Source.EVALUATION_SET, 219), (active.pk, EvaluationRun.Source.EVALUATION_SET, 219),
        (candidate.pk, EvaluationRun.Source.PRODUCTION, 40), (active.pk, EvaluationRun.Source.PRODUCTION, 40),
    ])
    assert all(start >= trained_until for _, source, _, start in runs if source == EvaluationRun.Source.PRODUCTION)


def test_running_a_job_twice_produces_one_candidate(mlp_deployment, operator):
    job = _queue(mlp_deployment, Kind.COMPRESS_INT8, operator)
    run_job(job.pk)
    before = (ModelVersion.objects.count(), EvaluationRun.objects.count(), _reloaded(job).finished_at)

    run_job(job.pk)

    assert (ModelVersion.objects.count(), EvaluationRun.objects.count(), _reloaded(job).finished_at) == before
    assert ModelVersion.objects.filter(created_by_job=job).count() == 1


def test_a_job_whose_worker_died_is_taken_over_without_a_second_candidate(mlp_deployment, operator):
    job = _queue(mlp_deployment, Kind.COMPRESS_INT8, operator)
    run_job(job.pk)
    candidate = _reloaded(job).candidate
    # As if the worker was killed during the comparison, and the broker redelivered after its visibility timeout.
    MaintenanceJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, progress=65, heartbeat_at=timezone.now() - jobs.STALE_AFTER - timedelta(seconds=1)
    )

    run_job(job.pk)

    job = _reloaded(job)
    assert job.status == Status.SUCCEEDED and job.candidate == candidate
    assert ModelVersion.objects.filter(created_by_job=job).count() == 1


def test_a_job_cancelled_before_it_starts_produces_nothing(mlp_deployment, operator):
    versions = ModelVersion.objects.count()
    job = _queue(mlp_deployment, Kind.COMPRESS_INT8, operator)
    services.job_cancel(job=job, by=operator)

    run_job(job.pk)

    job = _reloaded(job)
    assert job.status == Status.CANCELLED and job.candidate is None and job.started_at is None
    assert ModelVersion.objects.count() == versions and not EvaluationRun.objects.exists()


def test_a_job_cancelled_while_it_runs_stops_quietly_and_produces_nothing(mlp_deployment, operator, monkeypatch):
    versions = ModelVersion.objects.count()
    job = _queue(mlp_deployment, Kind.COMPRESS_INT8, operator)
    method = METHODS["int8_dynamic"]

    def quantize_while_the_operator_cancels(data: bytes, calibration):
        services.job_cancel(job=job, by=operator)
        return method.run(data, calibration)

    monkeypatch.setitem(METHODS, "int8_dynamic", dataclasses.replace(method, run=quantize_while_the_operator_cancels))

    run_job(job.pk)

    job = _reloaded(job)
    assert job.status == Status.CANCELLED and job.candidate is None and job.error == ""
    assert ModelVersion.objects.count() == versions and not EvaluationRun.objects.exists()
    assert not Alert.objects.exclude(kind=Alert.Kind.CANDIDATE_WAITING).exists()  # only "the candidate waits"


def test_distilling_a_forest_gives_a_much_smaller_student_compared_on_the_same_rows(forest_deployment, operator):
    active = forest_deployment.active_version()
    job = services.job_queue(version=active, kind=Kind.DISTILL, by=operator, params={"temperature": "2"})

    run_job(job.pk)

    job = _reloaded(job)
    assert job.status == Status.SUCCEEDED, job.error
    candidate = job.candidate
    assert candidate.origin == Kind.DISTILL and candidate.parent == active
    assert active.size_bytes / candidate.size_bytes >= 20
    assert job.result["distill"]["temperature"] == 2.0 and job.result["distill"]["agreement"] > 0.9
    runs = {r.version_id: r.metrics for r in job.evaluations.all()}
    assert runs[candidate.pk]["accuracy"] >= runs[active.pk]["accuracy"] - 0.02


def test_pruning_with_the_seeds_rule_records_its_report(mlp_deployment, operator):
    job = services.job_queue(
        version=mlp_deployment.active_version(), kind=Kind.COMPRESS_PRUNE, by=operator, params={"alpha": "0.3"}
    )

    run_job(job.pk)

    job = _reloaded(job)
    assert job.status == Status.SUCCEEDED, job.error
    report = job.result["compression"]
    assert report["method"] == "prune" and report["details"]["alpha"] == 0.3
    assert report["size_after"] == job.candidate.size_bytes < report["size_before"]


def test_the_search_registers_the_smallest_model_within_tolerance_and_keeps_the_front(mlp_deployment, operator):
    active = mlp_deployment.active_version()
    job = services.job_queue(version=active, kind=Kind.FIND_SMALLER, by=operator, params={"tolerance": "1"})

    run_job(job.pk)

    job = _reloaded(job)
    assert job.status == Status.SUCCEEDED, job.error
    search = job.result["search"]
    kept = [t for t in search["trials"] if t["kept"]]
    assert kept and all(t["f1_macro"] >= search["baseline"]["f1_macro"] - 0.01 for t in kept)
    assert {t["method"] for t in search["trials"]} >= {"int8_dynamic", "kmeans", "prune"}
    best = search["trials"][search["best"]]
    assert search["best"] in search["front"] and best["size_bytes"] == job.candidate.size_bytes
    assert best["size_bytes"] == min(search["trials"][i]["size_bytes"] for i in search["front"])
    assert ModelVersion.objects.filter(created_by_job=job).count() == 1
    # The candidate's notes name the winning setting in words, not as a dict.
    assert "{" not in job.candidate.notes and " bytes, F1 " in job.candidate.notes

