"""What a deployment keeps: its retention settings, the oldest data still stored, and the next purge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Sum

from monitoring.models import Deployment, DriftReport, EvaluationRun, PredictionBatch


@dataclass(frozen=True)
class RetentionSummary:
    predictions_days: int | None  # None: kept for ever
    reports_days: int | None
    full_resolution_days: int  # evaluations older than this are thinned to one per day, never deleted
    stored_batches: int
    stored_rows: int
    oldest_prediction_at: datetime | None
    oldest_report_at: datetime | None
    oldest_evaluation_at: datetime | None
    expiring_batches: int  # claimed by a purge that has not finished them yet
    next_purge_at: datetime
    purged_at: datetime | None
    last_purge: dict


def next_purge_at(now: datetime) -> datetime:
    """The next run of the nightly beat entry "purge-expired-data" (settings: :30 past RETENTION_PURGE_HOUR_UTC)."""
    now = now.astimezone(UTC)
    today = now.replace(hour=settings.RETENTION_PURGE_HOUR_UTC, minute=30, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)


def retention_summary(*, deployment: Deployment, now: datetime) -> RetentionSummary:
    """Four aggregate queries, each served by the deployment's time index of its table."""
    stored = PredictionBatch.objects.live().filter(deployment=deployment).aggregate(
        n=Count("pk"), rows=Sum("n_rows"), oldest=Min("t_min")
    )
    expiring = PredictionBatch.objects.filter(deployment=deployment, state=PredictionBatch.State.EXPIRING).count()
    return RetentionSummary(
        predictions_days=deployment.retain_predictions_days,
        reports_days=deployment.retain_reports_days,
        full_resolution_days=settings.METRIC_FULL_RESOLUTION_DAYS,
        stored_batches=stored["n"],
        stored_rows=stored["rows"] or 0,
        oldest_prediction_at=stored["oldest"],
        oldest_report_at=DriftReport.objects.filter(deployment=deployment).aggregate(t=Min("window_end"))["t"],
        oldest_evaluation_at=EvaluationRun.objects.filter(deployment=deployment).aggregate(t=Min("measured_at"))["t"],
        expiring_batches=expiring,
        next_purge_at=next_purge_at(now),
        purged_at=deployment.purged_at,
        last_purge=deployment.last_purge or {},
    )
