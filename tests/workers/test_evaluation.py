"""Evaluating versions on the evaluation set and on labelled production traffic."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone

from monitoring import services, storage
from monitoring.models import Alert, EvaluationRun, MetricPoint, ModelVersion
from monitoring.runtime import SessionCache
from tests.conftest import trained_model
from tests.workers.conftest import holdout, ingest_traffic
from workers.evaluation import evaluate_deployment, evaluate_version

pytestmark = pytest.mark.django_db
Source = EvaluationRun.Source


def test_it_scores_the_active_version_on_the_evaluation_set_and_stores_the_series(deployment):
    version = deployment.active_version()

    run = evaluate_version(version=version, source=Source.EVALUATION_SET)

    assert run.status == EvaluationRun.Status.SUCCEEDED and run.error == ""
    assert run.n_rows == deployment.evaluation_dataset.n_rows == 219
    assert run.dataset == deployment.evaluation_dataset
    m = run.metrics
    assert m["accuracy"] > 0.9 and m["f1_macro"] > 0.9 and m["roc_auc"] > 0.95
    assert sum(map(sum, m["confusion_matrix"])) == 219
    assert 0 < m["latency_p50_ms"] <= m["latency_p95_ms"] <= m["latency_p99_ms"]
    assert m["throughput_rows_per_s"] > 0
    assert m["size_bytes"] == version.size_bytes
    points = dict(MetricPoint.objects.filter(run=run).values_list("name", "value"))
    assert points["accuracy"] == pytest.approx(m["accuracy"])
    assert {"f1_macro", "roc_auc", "latency_p95_ms", "throughput_rows_per_s"} <= set(points)


def test_a_score_below_the_threshold_opens_one_critical_alert(deployment):
    deployment.metric_thresholds = {"accuracy": 0.999}
    deployment.save()
    version = deployment.active_version()

    first = evaluate_version(version=version, source=Source.EVALUATION_SET, latency=False)
    evaluate_version(version=version, source=Source.EVALUATION_SET, latency=False)

    alert = Alert.objects.get(deployment=deployment)
    assert alert.kind == Alert.Kind.METRIC_BELOW_THRESHOLD and alert.severity == Alert.Severity.CRITICAL
    assert alert.status == Alert.Status.OPEN and alert.occurrences == 2
    assert f"{first.metrics['accuracy']:.3f}" in alert.title


def test_it_raises_no_alert_when_asked_not_to_or_for_a_candidate(deployment, operator):
    deployment.metric_thresholds = {"accuracy": 0.999}
    deployment.save()
    onnx_bytes, _ = trained_model(C=0.01)
    candidate = services.version_register(deployment=deployment, data=onnx_bytes, by=operator)

    evaluate_version(
        version=deployment.active_version(), source=Source.EVALUATION_SET, raise_alerts=False, latency=False
    )
    evaluate_version(version=candidate, source=Source.EVALUATION_SET, latency=False)

    assert not Alert.objects.exclude(kind=Alert.Kind.CANDIDATE_WAITING).exists()  # only "the candidate waits"
    assert EvaluationRun.objects.filter(status=EvaluationRun.Status.SUCCEEDED).count() == 2


def test_it_scores_only_labelled_predictions_inside_the_window(deployment):
    X, y = holdout()
    now = timezone.now()
    start = now - timedelta(days=2)
    # 100 rows in the window (60 of them labelled), and 50 labelled rows the day before it.
    ingest_traffic(deployment, X[:60], predicted=y[:60], labels=y[:60], start=start, prefix="in-labelled")
    ingest_traffic(deployment, X[60:100], predicted=y[60:100], start=start, prefix="in-unlabelled")
    ingest_traffic(
        deployment, X[100:150], predicted=y[100:150], labels=y[100:150], start=start - timedelta(days=1), prefix="before"
    )

    run = evaluate_version(
        version=deployment.active_version(), source=Source.PRODUCTION, window_start=start, window_end=now, latency=False
    )

    assert run.status == EvaluationRun.Status.SUCCEEDED
    assert run.n_rows == 60 and run.metrics["accuracy"] > 0.9
    assert (run.window_start, run.window_end, run.measured_at) == (start, now, now)
    assert "latency_p50_ms" not in run.metrics


def test_a_window_without_labelled_rows_creates_no_run(deployment):
    X, y = holdout()
    ingest_traffic(deployment, X[:40], predicted=y[:40], start=timezone.now() - timedelta(hours=2))

    run = evaluate_version(version=deployment.active_version(), source=Source.PRODUCTION)

    assert run is None
    assert not EvaluationRun.objects.exists() and not MetricPoint.objects.exists()


def test_the_scheduled_evaluation_skips_a_source_without_data(deployment):
    runs = evaluate_deployment(deployment=deployment)

    assert [(r.source, r.status) for r in runs] == [(Source.EVALUATION_SET, EvaluationRun.Status.SUCCEEDED)]
    assert runs[0].version == deployment.active_version()


def test_the_scheduled_evaluation_covers_labelled_traffic_too(deployment):
    X, y = holdout()
    ingest_traffic(deployment, X[:50], predicted=y[:50], labels=y[:50], start=timezone.now() - timedelta(hours=3))

    runs = evaluate_deployment(deployment=deployment)

    assert sorted((r.source, r.n_rows) for r in runs) == [
        (Source.EVALUATION_SET, 219), (Source.PRODUCTION, 50), (Source.PRODUCTION_DAY, 50)
    ]


def test_the_daily_and_weekly_windows_each_score_their_own_rows_and_store_per_class_series(deployment):
    X, y = holdout()
    now = timezone.now()
    # 40 labelled rows three days ago, 30 in the last hours: the week sees 70, the day only the 30.
    ingest_traffic(deployment, X[:40], predicted=y[:40], labels=y[:40], start=now - timedelta(days=3), prefix="old")
    flipped = np.where(y[40:70] == "0", "1", "0")  # the recent truth turned over: the model is now mostly wrong
    ingest_traffic(deployment, X[40:70], predicted=y[40:70], labels=flipped, start=now - timedelta(hours=2), prefix="new")

    runs = {run.source: run for run in evaluate_deployment(deployment=deployment)}

    day, week = runs[Source.PRODUCTION_DAY], runs[Source.PRODUCTION]
    assert (day.n_rows, week.n_rows) == (30, 70)
    assert day.window_end - day.window_start == timedelta(days=1)
    assert week.window_end - week.window_start == timedelta(days=deployment.evaluation_window_days)
    assert day.metrics["accuracy"] < 0.2 < week.metrics["accuracy"] - 0.3
    assert len(day.metrics["per_class"]["f1"]) == len(deployment.class_labels)
    point = MetricPoint.objects.filter(run=day, name="accuracy", source=Source.PRODUCTION_DAY).get()
    assert point.value == day.metrics["accuracy"]
    # Alerts go by the week: the day's collapse opens none of its own.
    assert not Alert.objects.filter(dedup_key__endswith=Source.PRODUCTION_DAY).exists()


def test_a_model_file_that_fails_verification_gives_a_failed_run_with_the_reason(deployment, monkeypatch):
    # A fresh session cache: a runner loaded by another test would never re-read the file.
    monkeypatch.setattr("monitoring.blobs.SESSIONS", SessionCache())
    version = deployment.active_version()
    path = Path(settings.MEDIA_ROOT) / "blobs" / version.sha256[:2] / version.sha256[2:4] / version.sha256
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))

        run = evaluate_version(version=version, source=Source.EVALUATION_SET)
    finally:
        path.write_bytes(original)

    assert run.status == EvaluationRun.Status.FAILED
    assert "fails verification" in run.error and run.finished_at is not None
    assert not MetricPoint.objects.exists()
    assert storage.sha256_hex(path.read_bytes()) == version.sha256
    assert ModelVersion.objects.get(pk=version.pk).status == ModelVersion.Status.ACTIVE
