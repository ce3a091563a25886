"""workers/shadow.py: a new candidate replayed over recent production inputs, on real models and stored traffic."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from monitoring import services
from monitoring.blobs import runner_for
from monitoring.models import ShadowReplay
from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model
from tests.dashboard.api.helpers import client_for
from workers.shadow import shadow_replay_compute


@pytest.fixture
def traffic(deployment):
    """100 recent production rows as v1 served them, and true labels for the first 40."""
    _, _, X, y = breast_cancer_split()
    X, y = X[:100], y[:100]
    served = runner_for(deployment.active_version()).predict(X).label_indices(CLASSES)
    at = (timezone.now() - timedelta(hours=1)).isoformat()
    services.predictions_ingest(deployment=deployment, rows=[
        {"id": f"r{i}", "timestamp": at, "features": dict(zip(FEATURES, map(float, X[i]))), "predicted_label": CLASSES[served[i]]}
        for i in range(len(X))
    ])
    services.labels_ingest(deployment=deployment, rows=[{"id": f"r{i}", "label": str(y[i])} for i in range(40)])
    return X, y, served


def test_registering_a_candidate_replays_recent_traffic_through_it(deployment, operator, traffic):
    X, y, served = traffic
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.001)[0], by=operator)
    replay = ShadowReplay.objects.get(candidate=candidate)
    assert replay.status == "queued" and replay.active == deployment.active_version()

    shadow_replay_compute(replay_id=replay.pk)

    replay.refresh_from_db()
    theirs = runner_for(candidate).predict(X).label_indices(CLASSES)
    results = replay.results
    assert (replay.status, replay.n_rows, results["capped"], results["labelled_rows"]) == ("succeeded", 100, False, 40)
    assert results["agreement"] == pytest.approx(np.mean(theirs == served))
    assert results["agreement"] < 1.0  # C=0.001 is a different model: the test would not see a swapped column
    shift = {k["label"]: k for k in results["class_shift"]}
    assert shift["1"]["candidate"] == pytest.approx(np.mean(theirs == 1))
    assert shift["1"]["logged"] == pytest.approx(np.mean(served == 1))
    assert results["labelled"]["logged"]["accuracy"] == pytest.approx(np.mean(served[:40] == y[:40]))
    assert results["labelled"]["candidate"]["accuracy"] == pytest.approx(np.mean(theirs[:40] == y[:40]))
    assert results["estimated"]["calibrated"] is True and 0.5 < results["estimated"]["accuracy"] <= 1.0
    assert replay.window_end - replay.window_start == timedelta(hours=deployment.drift_window_hours)


def test_a_replay_is_computed_once(deployment, operator, traffic):
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.001)[0], by=operator)
    replay = ShadowReplay.objects.get(candidate=candidate)
    shadow_replay_compute(replay_id=replay.pk)
    first = ShadowReplay.objects.get(pk=replay.pk)

    shadow_replay_compute(replay_id=replay.pk)  # a redelivered task
    services.shadow_replay_request(candidate=candidate, active=deployment.active_version())

    again = ShadowReplay.objects.get(pk=replay.pk)
    assert (again.computed_at, again.results) == (first.computed_at, first.results)
    assert ShadowReplay.objects.count() == 1


def test_the_row_cap_keeps_the_newest_rows(deployment, operator, traffic, settings):
    settings.SHADOW_REPLAY_MAX_ROWS = 30
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.001)[0], by=operator)
    replay = ShadowReplay.objects.get(candidate=candidate)

    shadow_replay_compute(replay_id=replay.pk)

    replay.refresh_from_db()
    assert (replay.n_rows, replay.row_cap, replay.results["capped"]) == (30, 30, True)


def test_the_compare_page_shows_the_replay_and_its_rows(deployment, operator, viewer, traffic):
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.001)[0], by=operator)
    waiting = client_for(viewer).get(reverse("version-compare", args=["tumour", candidate.number])).content.decode()
    shadow_replay_compute(replay_id=ShadowReplay.objects.get(candidate=candidate).pk)

    page = " ".join(client_for(viewer).get(reverse("version-compare", args=["tumour", candidate.number])).content.decode().split())

    assert 'data-state="replaying"' in waiting
    assert 'data-section="shadow-replay"' in page
    assert "100 rows: the production inputs from" in page and "40 of them have true labels" in page
    assert 'data-metric="labelled-accuracy"' in page and 'data-metric="estimated-accuracy"' in page


# ---------------------------------------------------------------- traffic by version in the evaluation


def test_the_evaluation_scores_each_serving_version_when_several_served(deployment, operator, approver, viewer):
    from workers.evaluation import evaluate_deployment

    _, _, X, y = breast_cancer_split()
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.001)[0], by=operator)
    services.version_approve(version=candidate, by=approver, comment="ship it")
    at = (timezone.now() - timedelta(hours=2)).isoformat()
    for version, rows, answer in ((1, range(0, 30), lambda i: str(y[i])), (2, range(30, 50), lambda i: "0")):
        services.predictions_ingest(deployment=deployment, version=version, rows=[
            {"id": f"r{i}", "timestamp": at, "features": dict(zip(FEATURES, map(float, X[i]))), "predicted_label": answer(i)}
            for i in rows
        ])
    services.labels_ingest(deployment=deployment, rows=[{"id": f"r{i}", "label": str(y[i])} for i in range(50)])

    runs = evaluate_deployment(deployment=deployment)

    production = next(r for r in runs if r.source == "production")
    by_version = {row["version"]: row for row in production.metrics["served_by_version"]}
    assert (by_version[1]["n_rows"], by_version[1]["accuracy"]) == (30, 1.0)  # v1 logged the true labels
    assert (by_version[2]["n_rows"], by_version[2]["accuracy"]) == (20, pytest.approx(np.mean(y[30:50] == 0)))
    page = client_for(viewer).get(reverse("deployment", args=["tumour"])).content.decode()
    assert 'data-table="served-by-version"' in page
