"""The approval page's statistics through the real broker to a real `celery worker` process."""

from __future__ import annotations

import pytest
from django.urls import reverse

from monitoring import services
from monitoring.models import VersionComparisonResult
from tests.conftest import trained_model, wait_for
from tests.workers.conftest import holdout, ingest_traffic, recent_start
from workers.tasks import compare_versions_task

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
Status = VersionComparisonResult.Status


def test_the_worker_computes_the_comparison_of_a_registered_candidate(
    client, celery_worker_process, deployment, operator, viewer
):
    X, y = holdout()
    ingest_traffic(deployment, X[:60], predicted=y[:60], labels=y[:60], start=recent_start(60))
    # Committed at once (no surrounding transaction), so version_register's on_commit sends the two tasks.
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.25)[0], by=operator)

    rows = wait_for(lambda: (
        rows := list(VersionComparisonResult.objects.filter(candidate=candidate, status__in=[Status.SUCCEEDED, Status.FAILED]))
    ) and len(rows) == 2 and rows)

    assert {(r.source, r.status, r.n_rows, r.error) for r in rows} == {
        ("evaluation_set", Status.SUCCEEDED, deployment.evaluation_dataset.n_rows, ""),
        ("production", Status.SUCCEEDED, 60, ""),
    }
    client.force_login(viewer)
    page = client.get(reverse("version-compare", args=["tumour", candidate.number])).content.decode()
    assert page.count("McNemar p =") == 2 and "Computing the comparison" not in page


def _finished(candidate) -> bool:
    return VersionComparisonResult.objects.filter(candidate=candidate, status=Status.SUCCEEDED).count() == 2


def test_a_redelivered_task_computes_nothing_again(celery_worker_process, deployment, operator):
    first = services.version_register(deployment=deployment, data=trained_model(C=0.25)[0], by=operator)
    wait_for(lambda: _finished(first))
    before = dict(VersionComparisonResult.objects.filter(candidate=first).values_list("pk", "computed_at"))

    for pk in before:  # as the broker would redeliver them
        compare_versions_task.delay(pk)
    # One worker process, one task at a time, in order: once the next candidate's are done, so are the repeats.
    second = services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)
    wait_for(lambda: _finished(second))

    assert dict(VersionComparisonResult.objects.filter(candidate=first).values_list("pk", "computed_at")) == before
