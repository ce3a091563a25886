"""The maintenance form's applicability list, queuing with settings, and the approval page's comparison."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from monitoring import services
from monitoring.models import AuditEvent, MaintenanceJob, ModelVersion, VersionComparisonResult
from tests.workers.conftest import digits_split, mlp_deployment  # noqa: F401  (fixture)
from workers.comparison import comparison_compute
from workers.jobs import run_job

pytestmark = pytest.mark.django_db


def test_the_jobs_form_lists_every_method_with_why_it_does_not_apply(client, operator, deployment):
    client.force_login(operator)

    page = client.get(reverse("deployment", args=["tumour"])).content.decode()

    assert 'data-kind="compress_int8" data-applicable="false"' in page
    assert 'data-kind="retrain" data-applicable="true"' in page
    assert "LinearClassifier" in page and "a linear model is already as small as a student" in page
    assert '<option value="compress_int8" disabled' in page


def test_an_operator_queues_a_pruning_job_with_its_settings(client, operator, mlp_deployment):
    client.force_login(operator)

    response = client.post(
        reverse("job-queue", args=["digits"]),
        {"version": 1, "kind": "compress_prune", "param_sparsity": "0.7", "param_temperature": "3"},
    )

    assert response.status_code == 302
    job = MaintenanceJob.objects.get()
    assert (job.kind, job.params, job.requested_by) == ("compress_prune", {"sparsity": 0.7}, operator)
    assert AuditEvent.objects.filter(action="job.queue", object_id=str(job.pk)).exists()


def test_the_server_refuses_a_job_that_does_not_apply_even_if_the_form_is_bypassed(client, operator, deployment):
    client.force_login(operator)

    response = client.post(reverse("job-queue", args=["tumour"]), {"version": 1, "kind": "distill"}, follow=True)

    assert "a linear model is already as small as a student" in response.content.decode()
    assert not MaintenanceJob.objects.exists()


def test_a_viewer_cannot_queue_a_search(client, viewer, mlp_deployment):
    client.force_login(viewer)

    response = client.post(reverse("job-queue", args=["digits"]), {"version": 1, "kind": "find_smaller"})

    assert response.status_code == 403
    assert not MaintenanceJob.objects.exists()


def _compressed_candidate(deployment, operator) -> ModelVersion:
    job = services.job_queue(version=deployment.active_version(), kind=MaintenanceJob.Kind.COMPRESS_INT8, by=operator)
    run_job(job.pk)
    return MaintenanceJob.objects.get(pk=job.pk).candidate


def _comparisons_computed(candidate: ModelVersion) -> None:
    # Under a test transaction nothing commits, so the comparison tasks queued on commit never run: run them here.
    for result_id in VersionComparisonResult.objects.filter(candidate=candidate).values_list("pk", flat=True):
        comparison_compute(result_id=result_id)


def test_the_approval_page_compares_the_candidate_on_the_same_rows(client, viewer, operator, mlp_deployment):
    candidate = _compressed_candidate(mlp_deployment, operator)
    _comparisons_computed(candidate)
    client.force_login(viewer)

    response = client.get(reverse("version-compare", args=["digits", candidate.number]))

    assert response.status_code == 200
    comparison = response.context["comparison"]
    (evaluation,) = comparison.sources  # no labelled traffic yet: the evaluation set only
    _, _, X_test, _ = digits_split()
    assert evaluation.comparison.n_rows == len(X_test)
    assert evaluation.comparison.agreement > 0.95 and 0 <= evaluation.comparison.mcnemar.p_value <= 1
    assert comparison.size_ratio == pytest.approx(candidate.size_bytes / mlp_deployment.active_version().size_bytes)
    assert comparison.latency_ratio is not None  # both were timed by the job's evaluation
    page = response.content.decode()
    assert "McNemar p =" in page and "95 % bootstrap interval" in page and 'data-table="per-class"' in page
    figure = json.loads(page.split('id="chart-pareto-figure">')[1].split("</script>")[0])
    assert {trace["name"] for trace in figure["data"]} >= {"versions", "Pareto front"}
    assert 'data-action="approve"' not in page  # a viewer sees the evidence, not the buttons


def test_an_approver_sees_the_decision_buttons_and_an_outsider_gets_404(client, approver, outsider, operator, mlp_deployment):
    candidate = _compressed_candidate(mlp_deployment, operator)
    url = reverse("version-compare", args=["digits", candidate.number])

    client.force_login(approver)
    assert 'data-action="approve"' in client.get(url).content.decode()
    client.force_login(outsider)
    assert client.get(url).status_code == 404


def test_the_active_version_has_nothing_to_compare_with(client, viewer, deployment):
    client.force_login(viewer)

    response = client.get(reverse("version-compare", args=["tumour", 1]))

    assert response.status_code == 200 and 'data-empty="comparison"' in response.content.decode()
