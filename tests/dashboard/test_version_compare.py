"""The approval page reads stored comparisons only: queued when a candidate is registered, computed by a worker."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import time_machine
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from monitoring import services, storage
from monitoring.models import Dataset, ModelVersion, VersionComparisonResult
from monitoring.runtime import ModelRunner
from tests.conftest import breast_cancer_split, trained_model
from tests.workers.conftest import holdout, ingest_traffic, recent_start
from workers.comparison import comparison_compute

pytestmark = pytest.mark.django_db
Status = VersionComparisonResult.Status


def _candidate(deployment, by, django_capture_on_commit_callbacks) -> tuple[ModelVersion, list]:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        candidate = services.version_register(deployment=deployment, data=trained_model(C=0.25)[0], by=by)
    return candidate, callbacks


def _compute_all() -> None:
    # Under a test transaction nothing commits, so the tasks queued on commit never run: run their work here.
    for result_id in VersionComparisonResult.objects.filter(status=Status.QUEUED).values_list("pk", flat=True):
        comparison_compute(result_id=result_id)


def _page(client, deployment, number: int) -> str:
    response = client.get(reverse("version-compare", args=[deployment.slug, number]))
    assert response.status_code == 200
    return response.content.decode()


def test_registering_a_candidate_queues_one_comparison_per_source_after_commit(
    deployment, operator, django_capture_on_commit_callbacks
):
    candidate, callbacks = _candidate(deployment, operator, django_capture_on_commit_callbacks)

    rows = VersionComparisonResult.objects.filter(candidate=candidate).order_by("source")
    assert [(r.source, r.status, r.active_id) for r in rows] == [
        ("evaluation_set", Status.QUEUED, deployment.active_version().pk),
        ("production", Status.QUEUED, deployment.active_version().pk),
    ]
    assert rows[0].window_key == f"evaluation_set:{deployment.evaluation_dataset_id}"
    assert rows[1].window_key == f"production:{deployment.evaluation_window_days}d"
    # one compare_versions_task each, and the candidate's shadow replay, sent once the rows are committed
    assert len(callbacks) == 3


def test_the_page_runs_no_model_and_says_the_comparison_is_being_computed(
    client, viewer, operator, deployment, monkeypatch, django_capture_on_commit_callbacks
):
    candidate, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)

    def no_model_in_a_request(*args, **kwargs):
        raise AssertionError("the page ran a model")

    monkeypatch.setattr(ModelRunner, "predict", no_model_in_a_request)
    client.force_login(viewer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        page = _page(client, deployment, candidate.number)

    assert "Computing the comparison… started at" in page and 'data-state="computing"' in page
    assert '<meta http-equiv="refresh" content="5">' in page and "reload now" in page
    assert 'data-metric="f1"' not in page and "McNemar" not in page
    assert callbacks == []  # already queued at registration: the page queues nothing more


def test_the_page_shows_the_statistics_the_worker_stored(
    client, viewer, operator, deployment, django_capture_on_commit_callbacks
):
    X, y = holdout()
    ingest_traffic(deployment, X[:120], predicted=y[:120], labels=y[:120], start=recent_start(120))
    candidate, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)
    _compute_all()
    client.force_login(viewer)

    response = client.get(reverse("version-compare", args=["tumour", candidate.number]))

    comparison = response.context["comparison"]
    evaluation, production = comparison.sources
    _, _, X_test, _ = breast_cancer_split()
    assert (evaluation.source, evaluation.comparison.n_rows) == ("Evaluation set (holdout)", len(X_test))
    assert (production.source, production.comparison.n_rows) == ("Labelled production, last 7 days", 120)
    assert production.window_end - production.window_start == timedelta(days=7)
    assert 0 <= evaluation.comparison.mcnemar.p_value <= 1 and evaluation.comparison.agreement > 0.9
    assert comparison.waiting == comparison.failed == []
    page = response.content.decode()
    assert "McNemar p =" in page and "95 % bootstrap interval" in page and 'data-table="per-class"' in page
    assert "http-equiv=\"refresh\"" not in page and "Computed" in page


def test_a_redelivered_comparison_task_does_nothing(operator, deployment, django_capture_on_commit_callbacks):
    _candidate(deployment, operator, django_capture_on_commit_callbacks)
    _compute_all()
    before = list(VersionComparisonResult.objects.order_by("pk").values_list("pk", "status", "computed_at", "statistics"))

    for result_id, *_ in before:
        comparison_compute(result_id=result_id)

    after = list(VersionComparisonResult.objects.order_by("pk").values_list("pk", "status", "computed_at", "statistics"))
    assert after == before and {status for _, status, _, _ in after} == {Status.SUCCEEDED}


def test_a_new_active_version_gets_its_comparison_queued_by_the_page(
    client, viewer, approver, operator, deployment, django_capture_on_commit_callbacks
):
    v2, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        v3 = services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)
    services.version_approve(version=v2, by=approver, comment="")
    client.force_login(viewer)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        page = _page(client, deployment, v3.number)

    assert "Computing the comparison" in page
    assert set(VersionComparisonResult.objects.filter(candidate=v3).values_list("active__number", "status")) == {
        (1, Status.QUEUED), (2, Status.QUEUED)
    }
    assert len(callbacks) == 2  # (v2, v3) on both sources


def test_a_production_comparison_is_renewed_after_the_evaluation_interval_and_stays_shown_meanwhile(
    client, viewer, operator, deployment, django_capture_on_commit_callbacks
):
    X, y = holdout()
    ingest_traffic(deployment, X[:50], predicted=y[:50], labels=y[:50], start=recent_start(50))
    candidate, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)
    _compute_all()
    client.force_login(viewer)

    with django_capture_on_commit_callbacks(execute=False) as fresh:
        _page(client, deployment, candidate.number)
    later = timezone.now() + timedelta(minutes=settings.EVALUATION_INTERVAL_MINUTES + 1)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=False) as due:
        page = _page(client, deployment, candidate.number)

    assert fresh == [] and len(due) == 1  # only the production window moves; the evaluation set is final
    row = VersionComparisonResult.objects.get(candidate=candidate, source="production")
    assert row.status == Status.QUEUED and row.statistics["n_rows"] == 50
    assert 'data-state="recomputing"' in page and "Computing the comparison" not in page


def test_a_lost_comparison_task_is_queued_again_by_the_next_view(
    client, viewer, operator, deployment, django_capture_on_commit_callbacks
):
    candidate, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)
    client.force_login(viewer)
    later = timezone.now() + services.COMPARISON_LOST_AFTER + timedelta(seconds=1)

    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=False) as callbacks:
        _page(client, deployment, candidate.number)
        _page(client, deployment, candidate.number)  # a second view finds them freshly queued

    assert len(callbacks) == 2
    assert VersionComparisonResult.objects.filter(candidate=candidate, status=Status.QUEUED).count() == 2


def test_a_comparison_that_fails_shows_our_words_and_no_statistics(
    client, viewer, approver, operator, deployment, django_capture_on_commit_callbacks
):
    _, _, X_test, y_test = breast_cancer_split()
    evaluation = services.dataset_register(
        deployment=deployment, kind=Dataset.Kind.EVALUATION, name="shifted", X=X_test + 0.5, y=y_test, by=approver
    )
    storage.delete_blob(settings.MEDIA_ROOT, evaluation.sha256)  # as if the media store lost the file
    deployment.refresh_from_db()
    candidate, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)

    _compute_all()

    row = VersionComparisonResult.objects.get(candidate=candidate, source="evaluation_set")
    assert row.status == Status.FAILED and row.statistics is None
    assert row.error == "A stored file cannot be used (it is missing or does not match its checksum)."
    client.force_login(viewer)
    page = _page(client, deployment, candidate.number)
    assert 'data-state="failed"' in page and row.error in page and str(settings.MEDIA_ROOT) not in page
    assert 'data-metric="f1"' not in page


def test_a_comparison_on_no_labelled_rows_stores_no_statistics(operator, deployment, django_capture_on_commit_callbacks):
    candidate, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)

    _compute_all()

    row = VersionComparisonResult.objects.get(candidate=candidate, source="production")
    assert (row.status, row.n_rows, row.statistics) == (Status.SUCCEEDED, 0, None)


def test_the_stored_statistics_are_those_of_both_models_on_the_same_rows(
    operator, deployment, django_capture_on_commit_callbacks
):
    from monitoring.comparison import compare

    candidate, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)
    _compute_all()
    _, _, X_test, y_test = breast_cancer_split()
    answers = [
        ModelRunner(services.blob_read(v.sha256), label_output=v.label_output, class_labels=v.class_labels)
        .predict(X_test).labels
        for v in (deployment.active_version(), candidate)
    ]

    row = VersionComparisonResult.objects.get(candidate=candidate, source="evaluation_set")

    assert row.statistics == compare(np.asarray(y_test).astype(str), *answers, deployment.class_labels).as_dict()


def test_the_page_of_a_decided_version_queues_nothing(
    client, viewer, approver, operator, deployment, django_capture_on_commit_callbacks
):
    v2, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        v3 = services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)
    services.version_approve(version=v2, by=approver, comment="")
    services.version_reject(version=v3, by=approver, comment="no")
    client.force_login(viewer)
    before = VersionComparisonResult.objects.count()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for number in (1, v3.number):
            _page(client, deployment, number)

    assert VersionComparisonResult.objects.count() == before
    assert callbacks == []


def test_a_retrained_candidate_is_compared_only_on_rows_it_never_saw(
    client, viewer, operator, deployment, django_capture_on_commit_callbacks
):
    X, y = holdout()
    now = timezone.now()
    ingest_traffic(deployment, X[:50], predicted=y[:50], labels=y[:50], start=now - timedelta(days=6), prefix="seen")
    ingest_traffic(deployment, X[50:80], predicted=y[50:80], labels=y[50:80], start=now - timedelta(days=1), prefix="new")
    candidate, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)
    trained_until = now - timedelta(days=3)
    ModelVersion.objects.filter(pk=candidate.pk).update(training_rows={
        "reference_dataset": deployment.reference_dataset_id, "production_start": (now - timedelta(days=30)).isoformat(),
        "production_end": trained_until.isoformat(), "n_rows": 400,
    })
    _compute_all()

    production = VersionComparisonResult.objects.get(candidate=candidate, source="production")
    assert production.n_rows == 30 and production.window_start == trained_until
    client.force_login(viewer)
    page = _page(client, deployment, candidate.number)
    assert f"v{candidate.number} was trained on the reference set (train) and production traffic from" in page
    assert "which neither version was trained on" in page
    assert "data-in-sample" not in page  # the evaluation set (holdout) is not the reference set it learnt from


def test_a_comparison_on_rows_the_candidate_learnt_from_is_never_called_significant(
    client, viewer, operator, deployment, django_capture_on_commit_callbacks
):
    candidate, _ = _candidate(deployment, operator, django_capture_on_commit_callbacks)
    # As if it had been retrained on the evaluation set itself.
    ModelVersion.objects.filter(pk=candidate.pk).update(
        training_rows={"reference_dataset": deployment.evaluation_dataset_id, "n_rows": 219}
    )
    _compute_all()
    row = VersionComparisonResult.objects.get(candidate=candidate, source="evaluation_set")
    statistics = dict(row.statistics)
    statistics["mcnemar"] = {**statistics["mcnemar"], "p_value": 0.001}  # a difference that would be called out
    statistics["f1_delta"] = {**statistics["f1_delta"], "low": 0.01, "high": 0.05}
    VersionComparisonResult.objects.filter(pk=row.pk).update(statistics=statistics)
    client.force_login(viewer)

    page = _page(client, deployment, candidate.number)

    assert "data-in-sample" in page and "is not fair evidence" in page
    evaluation_card = page[page.index("Evaluation set ("):page.index("Per class")]
    assert "significant</strong>" not in evaluation_card and "excludes 0</strong>" not in evaluation_card
