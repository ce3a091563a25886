"""Stored comparisons of a candidate against the active version (the approval page)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from monitoring import background
from monitoring.models import (
    ModelVersion,
    VersionComparisonResult,
)

# Longer than compare_versions_task's hard time limit (10 minutes): a comparison queued or running for this
# long has lost its task (a worker died, a message was lost), and the next page view queues it again.
COMPARISON_LOST_AFTER = timedelta(minutes=15)


def _comparison_due(row: VersionComparisonResult, now: datetime) -> bool:
    """Whether a stored comparison should be computed again: lost, or finished and out of date.

    A production window moves, so its comparison is renewed as often as the scheduled evaluation renews the
    health charts (EVALUATION_INTERVAL_MINUTES); a failed one is retried at that pace too. An evaluation-set
    comparison that succeeded is final: the rows and both models are fixed.
    """
    Status = VersionComparisonResult.Status
    if row.status == Status.QUEUED:
        return row.queued_at < now - COMPARISON_LOST_AFTER
    if row.status == Status.RUNNING:
        return (row.started_at or row.queued_at) < now - COMPARISON_LOST_AFTER
    fresh_for = timedelta(minutes=settings.EVALUATION_INTERVAL_MINUTES)
    if row.status == Status.SUCCEEDED and row.source == VersionComparisonResult.Source.EVALUATION_SET:
        return False
    return (row.computed_at or row.queued_at) < now - fresh_for


@transaction.atomic
def comparisons_request(*, candidate: ModelVersion, active: ModelVersion) -> list[VersionComparisonResult]:
    """The stored comparisons of `candidate` against `active` on the deployment's current sources of labelled
    rows; the missing and the due ones (see _comparison_due) are queued for a worker.

    Called on every view of the approval page: one query when everything is stored and fresh. Not audited: a
    comparison is derived data, recomputable at any time, and decides nothing by itself.
    """
    from monitoring import selectors

    now = timezone.now()
    sources = selectors.comparison_sources(deployment=candidate.deployment)
    stored = {
        row.window_key: row
        for row in VersionComparisonResult.objects.filter(
            active=active, candidate=candidate, window_key__in=[source.window_key for source in sources]
        )
    }
    rows, queued = [], []
    # Only a candidate awaiting a decision is worth a worker's time: for a decided version the page shows what
    # was stored, and a viewer opening old versions' pages queues nothing.
    open_decision = candidate.status == ModelVersion.Status.CANDIDATE
    for source in sources:
        row = stored.get(source.window_key)
        if not open_decision:
            if row is not None:
                rows.append(row)
            continue
        if row is None:
            row, created = VersionComparisonResult.objects.get_or_create(
                active=active, candidate=candidate, window_key=source.window_key,
                defaults={
                    "deployment": candidate.deployment, "source": source.source, "description": source.description,
                    "dataset": source.dataset, "window_days": source.window_days, "queued_at": now,
                },
            )
            if created:
                queued.append(row.pk)
        # Conditional on the state just read: of two views that find it due at once, one queues it.
        elif _comparison_due(row, now) and VersionComparisonResult.objects.filter(
            pk=row.pk, status=row.status, queued_at=row.queued_at
        ).update(status=VersionComparisonResult.Status.QUEUED, queued_at=now, started_at=None):
            row.refresh_from_db()
            queued.append(row.pk)
        rows.append(row)
    for pk in queued:
        background.enqueue("workers.tasks.compare_versions_task", pk)
    return rows


def comparison_complete(
    *, result_id: int, statistics: dict | None, n_rows: int, window_start: datetime | None,
    window_end: datetime | None,
) -> bool:
    """Store a worker's statistics (None: the source had no rows). False when the row was no longer running."""
    return bool(VersionComparisonResult.objects.filter(
        pk=result_id, status=VersionComparisonResult.Status.RUNNING
    ).update(
        status=VersionComparisonResult.Status.SUCCEEDED, statistics=statistics, n_rows=n_rows,
        window_start=window_start, window_end=window_end, error="", computed_at=timezone.now(),
    ))


def comparison_fail(*, result_id: int, error: str) -> bool:
    """Mark a running comparison failed; earlier statistics stay for the page. False when it was not running."""
    return bool(VersionComparisonResult.objects.filter(
        pk=result_id, status=VersionComparisonResult.Status.RUNNING
    ).update(status=VersionComparisonResult.Status.FAILED, error=error[:2000], computed_at=timezone.now()))
