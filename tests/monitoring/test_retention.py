"""Retention (monitoring/services/retention.py): old batches, index rows, files and drift reports go in bounded
chunks; a file another row still names stays; the metric series stays, thinned past a year; a purge that dies
midway is finished by the next one."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import DatabaseError, connection

from monitoring import selectors, services, storage
from monitoring.models import (
    AuditEvent,
    CallStats,
    DriftFeaturePoint,
    DriftReport,
    EvaluationRun,
    MetricPoint,
    Prediction,
    PredictionBatch,
)
from monitoring.services import retention
from tests.builders import make_deployment
from tests.conftest import CLASSES, FEATURES, trained_model
from tests.monitoring.services.ingestion_helpers import prediction_rows

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _batch(deployment, *, age_days: float, start: int, n: int = 20, key: str | None = None) -> PredictionBatch:
    at = NOW - timedelta(days=age_days)
    rows = prediction_rows(n, start=start)
    for i, row in enumerate(rows):
        row["timestamp"] = (at + timedelta(seconds=i)).isoformat()
    result = services.predictions_ingest(deployment=deployment, rows=rows, idempotency_key=key)
    return PredictionBatch.objects.get(pk=result.batch_id)


def _age_files(*digests: str, days: int = 2) -> None:
    """Files written by this test are young; the collector spares young files (their rows may not have
    committed). Make them as old as the data they hold."""
    old = time.time() - days * 86400
    for digest in digests:
        os.utime(storage.blob_path(settings.MEDIA_ROOT, digest), (old, old))


def _report(deployment, *, age_days: int, n_features: int = 5) -> DriftReport:
    end = NOW - timedelta(days=age_days)
    report = DriftReport.objects.create(
        deployment=deployment, window_start=end - timedelta(days=1), window_end=end, n_reference=100, n_current=100,
    )
    DriftFeaturePoint.objects.bulk_create(
        DriftFeaturePoint(report=report, deployment=deployment, feature=f"f{i}", at=end, test="ks", statistic=0.1,
                          p_value=0.5, threshold=0.05, moved=0.1, drifted=False)
        for i in range(n_features)
    )
    return report


def _run(deployment, *, at: datetime, accuracy: float, status=EvaluationRun.Status.SUCCEEDED) -> EvaluationRun:
    version = deployment.active_version()
    run = EvaluationRun.objects.create(
        deployment=deployment, version=version, source=EvaluationRun.Source.PRODUCTION, status=status,
        measured_at=at, metrics={"accuracy": accuracy},
    )
    if status == EvaluationRun.Status.SUCCEEDED:
        MetricPoint.objects.bulk_create(
            MetricPoint(deployment=deployment, version=version, run=run, source=run.source, name=name, value=accuracy, at=at)
            for name in ("accuracy", "f1_macro")
        )
    return run


def test_old_batches_and_their_index_rows_go_and_recent_ones_stay(deployment, monkeypatch):
    monkeypatch.setattr(retention, "ROWS_PER_TRANSACTION", 7)  # several chunks per batch
    old = [_batch(deployment, age_days=120, start=0), _batch(deployment, age_days=91, start=20)]
    recent = _batch(deployment, age_days=89, start=40)
    services.labels_ingest(deployment=deployment, rows=[{"id": "req-3", "label": "1"}, {"id": "req-45", "label": "0"}])

    outcome = services.deployment_purge(deployment=deployment, now=NOW)

    assert (outcome.batches, outcome.rows, outcome.finished) == (2, 40, True)
    assert list(PredictionBatch.objects.filter(deployment=deployment).values_list("pk", flat=True)) == [recent.pk]
    assert set(Prediction.objects.filter(deployment=deployment).values_list("batch_id", flat=True)) == {recent.pk}
    assert Prediction.objects.filter(deployment=deployment).count() == 20
    assert not PredictionBatch.objects.filter(pk__in=[b.pk for b in old]).exists()
    # The label on the kept batch is still there; the purge is recorded and audited.
    assert Prediction.objects.get(deployment=deployment, request_id="req-45").label_index == 0
    deployment.refresh_from_db()
    assert deployment.purged_at == NOW and deployment.last_purge["batches"] == 2
    event = AuditEvent.objects.get(deployment=deployment, action="retention.purge")
    assert event.actor_label == "retention" and event.after["rows"] == 40


def test_the_clients_calls_go_with_the_predictions_retention(deployment, monkeypatch):
    monkeypatch.setattr(retention, "CALLS_PER_DELETE", 1)  # one chunk each
    for age, start in ((120, 0), (95, 20), (10, 40)):
        rows = prediction_rows(5, start=start)
        for row in rows:
            row["timestamp"] = (NOW - timedelta(days=age)).isoformat()
        services.predictions_ingest(deployment=deployment, rows=rows, calls=5, latency_us=[900] * 5)

    services.deployment_purge(deployment=deployment, now=NOW)

    assert [at.date() for at in CallStats.objects.values_list("at", flat=True)] == [(NOW - timedelta(days=10)).date()]


def test_a_second_purge_deletes_nothing_more(deployment):
    _batch(deployment, age_days=200, start=0)
    kept = _batch(deployment, age_days=10, start=20)
    services.deployment_purge(deployment=deployment, now=NOW)

    again = services.deployment_purge(deployment=deployment, now=NOW)

    assert not again.deleted_anything
    assert list(PredictionBatch.objects.filter(deployment=deployment).values_list("pk", flat=True)) == [kept.pk]
    assert AuditEvent.objects.filter(deployment=deployment, action="retention.purge").count() == 1


def test_a_deployment_that_keeps_predictions_for_ever_loses_none(deployment, approver):
    services.deployment_retention_configure(deployment=deployment, predictions_days=None, reports_days=None, by=approver)
    _batch(deployment, age_days=2000, start=0)
    _report(deployment, age_days=2000)

    outcome = services.deployment_purge(deployment=deployment, now=NOW)

    assert (outcome.batches, outcome.reports) == (0, 0)
    assert PredictionBatch.objects.filter(deployment=deployment).count() == 1
    assert Prediction.objects.filter(deployment=deployment).count() == 20
    assert DriftReport.objects.filter(deployment=deployment).count() == 1


def test_a_file_still_named_by_a_kept_batch_survives_and_an_unshared_one_goes(deployment, team, approver, settings):
    settings.BATCH_COLUMNS_IN_MEDIA_FROM_BYTES = 0  # every batch keeps its columns in the media store
    onnx_bytes, _ = trained_model()
    keeper = make_deployment(team=team, by=approver, name="Keeper", slug="keeper", feature_names=FEATURES,
                             class_labels=CLASSES, model=onnx_bytes)
    services.deployment_retention_configure(deployment=keeper, predictions_days=None, reports_days=365, by=approver)
    shared = _batch(deployment, age_days=100, start=0)
    twin = _batch(keeper, age_days=100, start=0)  # the same rows: the same file
    alone = _batch(deployment, age_days=100, start=100)
    assert shared.columns_sha256 == twin.columns_sha256 != alone.columns_sha256 != ""
    _age_files(shared.columns_sha256, alone.columns_sha256)

    outcome = services.deployment_purge(deployment=deployment, now=NOW)

    assert (outcome.batches, outcome.blobs) == (2, 1)
    assert storage.blob_exists(settings.MEDIA_ROOT, twin.columns_sha256)
    assert not storage.blob_exists(settings.MEDIA_ROOT, alone.columns_sha256)
    # The keeper's batch still reads back whole from its file.
    window = selectors.production_window(deployment=keeper, start=NOW - timedelta(days=101), end=NOW)
    assert len(window.X) == 20 and window.X.shape[1] == len(FEATURES)


def test_a_young_file_is_left_to_the_garbage_collector(deployment, settings):
    """A row being written may have just reused the file (put_blob refreshes its age): the purge spares it."""
    settings.BATCH_COLUMNS_IN_MEDIA_FROM_BYTES = 0
    batch = _batch(deployment, age_days=100, start=0)

    outcome = services.deployment_purge(deployment=deployment, now=NOW)

    assert (outcome.batches, outcome.blobs) == (1, 0)
    assert storage.blob_exists(settings.MEDIA_ROOT, batch.columns_sha256)
    assert services.storage_collect_garbage(older_than=timedelta(0)) >= 1
    assert not storage.blob_exists(settings.MEDIA_ROOT, batch.columns_sha256)


def test_a_batch_whose_file_is_gone_still_loses_its_index_rows(deployment, settings):
    settings.BATCH_COLUMNS_IN_MEDIA_FROM_BYTES = 0
    batch = _batch(deployment, age_days=100, start=0)
    storage.delete_blob(settings.MEDIA_ROOT, batch.columns_sha256)

    outcome = services.deployment_purge(deployment=deployment, now=NOW)

    assert (outcome.batches, outcome.rows) == (1, 20)
    assert not Prediction.objects.filter(deployment=deployment).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a trigger stands in for the process dying")
def test_a_purge_that_dies_midway_leaves_nothing_counted_and_the_next_run_finishes_it(deployment, monkeypatch):
    monkeypatch.setattr(retention, "ROWS_PER_TRANSACTION", 8)
    doomed = _batch(deployment, age_days=100, start=0)
    kept = _batch(deployment, age_days=1, start=20)
    table = PredictionBatch._meta.db_table
    # The database refuses to delete batch rows: the purge dies after its index rows went, before the batch did.
    with connection.cursor() as cursor:
        cursor.execute("CREATE FUNCTION wk_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'killed'; END $$ LANGUAGE plpgsql")
        cursor.execute(f"CREATE TRIGGER wk_refuse BEFORE DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION wk_refuse()")
    with pytest.raises(DatabaseError, match="killed"):
        services.deployment_purge(deployment=deployment, now=NOW)

    doomed.refresh_from_db()
    assert doomed.state == PredictionBatch.State.EXPIRING
    assert not Prediction.objects.filter(batch_id=doomed.pk).exists()
    # Half-deleted is never half-counted: no window or count includes an expiring batch.
    everything = selectors.production_window(deployment=deployment, start=NOW - timedelta(days=365), end=NOW)
    assert len(everything.X) == 20
    assert selectors.prediction_counts(deployment=deployment, since=NOW - timedelta(days=365))[0] == 20
    assert selectors.retention_summary(deployment=deployment, now=NOW).expiring_batches == 1

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER wk_refuse ON {table}")
        cursor.execute("DROP FUNCTION wk_refuse()")
    # Even with predictions now kept for ever, what was claimed is finished.
    deployment.retain_predictions_days = None
    outcome = services.deployment_purge(deployment=deployment, now=NOW)

    assert outcome.batches == 1
    assert list(PredictionBatch.objects.filter(deployment=deployment).values_list("pk", flat=True)) == [kept.pk]
    assert Prediction.objects.filter(deployment=deployment).count() == 20


def test_a_purge_out_of_time_stops_between_chunks_and_resumes(deployment):
    for i in range(3):
        _batch(deployment, age_days=100 + i, start=20 * i)

    first = services.deployment_purge(deployment=deployment, now=NOW, budget_seconds=0)
    assert not first.finished and not first.deleted_anything

    second = services.deployment_purge(deployment=deployment, now=NOW)
    assert second.finished and second.batches == 3
    assert not PredictionBatch.objects.filter(deployment=deployment).exists()


def test_old_drift_reports_go_with_their_points_and_recent_ones_stay(deployment):
    old = [_report(deployment, age_days=400), _report(deployment, age_days=366)]
    recent = _report(deployment, age_days=364)

    outcome = services.deployment_purge(deployment=deployment, now=NOW)

    assert outcome.reports == 2
    assert list(DriftReport.objects.filter(deployment=deployment).values_list("pk", flat=True)) == [recent.pk]
    assert not DriftFeaturePoint.objects.filter(report_id__in=[r.pk for r in old]).exists()
    assert DriftFeaturePoint.objects.filter(report=recent).count() == 5


def test_the_metric_series_is_kept_and_thinned_to_one_run_per_day_past_a_year(deployment):
    day = datetime(2025, 4, 10, tzinfo=UTC)  # more than a year before NOW
    old_runs = [_run(deployment, at=day + timedelta(hours=h), accuracy=0.80 + h / 100) for h in range(0, 24, 6)]
    failed = _run(deployment, at=day + timedelta(hours=3), accuracy=0, status=EvaluationRun.Status.FAILED)
    next_day = [_run(deployment, at=day + timedelta(days=1, hours=h), accuracy=0.9) for h in (1, 2)]
    recent = [_run(deployment, at=NOW - timedelta(days=30, hours=h), accuracy=0.95) for h in range(5)]

    outcome = services.deployment_purge(deployment=deployment, now=NOW)

    kept = set(EvaluationRun.objects.filter(deployment=deployment, source=EvaluationRun.Source.PRODUCTION)
               .values_list("pk", flat=True))
    # The last run of each old day, and every recent run.
    assert kept == {old_runs[-1].pk, next_day[-1].pk, *(r.pk for r in recent)}
    assert outcome.evaluations == len(old_runs) - 1 + 1 + 1  # three of the day, the failed one, one of the next
    assert failed.pk not in kept
    # The series still covers both old days, with the kept runs' values.
    points = MetricPoint.objects.filter(deployment=deployment, name="accuracy", at__lt=NOW - timedelta(days=365))
    assert sorted(points.values_list("value", flat=True)) == [0.9, pytest.approx(0.98)]
    assert not MetricPoint.objects.filter(run_id__in=[r.pk for r in old_runs[:-1]]).exists()
    assert services.deployment_purge(deployment=deployment, now=NOW).evaluations == 0


def test_retention_settings_are_validated_and_audited(deployment, approver):
    with pytest.raises(services.ValidationFailed) as refused:
        services.deployment_retention_configure(deployment=deployment, predictions_days=3, reports_days=365, by=approver)
    assert "from 7" in refused.value.message  # the evaluation window reads 7 days back
    for bad in (0, 4000, "90", True):
        with pytest.raises(services.ValidationFailed):
            services.deployment_retention_configure(deployment=deployment, predictions_days=90, reports_days=bad, by=approver)
    deployment.refresh_from_db()
    assert (deployment.retain_predictions_days, deployment.retain_reports_days) == (90, 365)
    assert not AuditEvent.objects.filter(action="deployment.retention_configure").exists()

    services.deployment_retention_configure(deployment=deployment, predictions_days=30, reports_days=None, by=approver)

    deployment.refresh_from_db()
    assert (deployment.retain_predictions_days, deployment.retain_reports_days) == (30, None)
    event = AuditEvent.objects.get(action="deployment.retention_configure")
    assert event.before == {"retain_predictions_days": 90, "retain_reports_days": 365}
    assert event.after == {"retain_predictions_days": 30, "retain_reports_days": None}


def test_the_summary_says_what_is_kept_and_when_the_next_purge_runs(deployment, settings):
    settings.RETENTION_PURGE_HOUR_UTC = 3
    _batch(deployment, age_days=50, start=0)
    _batch(deployment, age_days=5, start=20)

    summary = selectors.retention_summary(deployment=deployment, now=NOW)

    assert (summary.predictions_days, summary.reports_days) == (90, 365)
    assert (summary.stored_batches, summary.stored_rows) == (2, 40)
    assert summary.oldest_prediction_at == NOW - timedelta(days=50)
    assert summary.next_purge_at == datetime(2026, 6, 2, 3, 30, tzinfo=UTC)
    assert selectors.next_purge_at(datetime(2026, 6, 2, 1, 0, tzinfo=UTC)) == datetime(2026, 6, 2, 3, 30, tzinfo=UTC)


def test_the_nightly_beat_entry_purges_each_deployment_through_its_task(deployment):
    from django.utils import timezone

    from workers.tasks import purge_deployment_task

    entry = settings.CELERY_BEAT_SCHEDULE["purge-expired-data"]
    assert entry["task"] == "workers.tasks.purge_all_task"
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({settings.RETENTION_PURGE_HOUR_UTC}, {30})
    now = timezone.now()
    rows = prediction_rows(10)
    for i, row in enumerate(rows):
        row["timestamp"] = (now - timedelta(days=200, seconds=-i)).isoformat()
    services.predictions_ingest(deployment=deployment, rows=rows)

    purge_deployment_task(deployment.pk)  # in this process, with the real Redis lock

    assert not PredictionBatch.objects.filter(deployment=deployment).exists()
    deployment.refresh_from_db()
    assert deployment.last_purge["rows"] == 10
