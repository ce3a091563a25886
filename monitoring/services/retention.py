"""Retention: each deployment keeps its stored predictions and drift reports for as long as it says, and its
metric series for ever (thinned to one evaluation per day past settings.METRIC_FULL_RESOLUTION_DAYS).

The purge never holds one long transaction. Old batches are claimed a few at a time (state -> expiring, under
FOR UPDATE SKIP LOCKED, so two purges never share one and no window counts a batch once it is claimed), their
index rows are deleted ROWS_PER_TRANSACTION at a time, then the batch row itself, then its media file through
the collector, which keeps a file another row still names. A purge killed at any point leaves batches either
whole or expiring, and the next run finishes the expiring ones first: running it twice is running it once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber, TruncDate
from django.utils import timezone

from monitoring import batches, selectors, storage
from monitoring.models import CallStats, Deployment, DriftReport, EvaluationRun, Prediction, PredictionBatch
from monitoring.services.audit import audit_record
from monitoring.services.blobs import storage_collect
from monitoring.services.errors import ValidationFailed

logger = logging.getLogger(__name__)

# 5,000 index rows per transaction: each chunk is a few milliseconds of row locks by primary key, so ingestion
# and label writes on the same table never wait behind the purge, and a killed purge loses one chunk at most.
ROWS_PER_TRANSACTION = 5_000
# Batches claimed per transaction: claiming only flips their state, so this bounds the work a crash leaves
# expiring (finished by the next run), not a lock.
BATCHES_PER_CLAIM = 20
# The client's calls (one ~400-byte row per batch) go with the predictions' retention, this many per transaction:
# a few MB, a short lock.
CALLS_PER_DELETE = 10_000
# A drift report has one point per feature (50 in a wide deployment): 100 reports is about 5,000 rows.
REPORTS_PER_TRANSACTION = 100
# An evaluation run has a point per metric (about 20): 250 runs is about 5,000 rows.
EVALUATIONS_PER_TRANSACTION = 250
# Years of data: more than ten is a typo, and a retention shorter than a day purges what is being measured.
MAX_RETENTION_DAYS = 3650


@dataclass
class PurgeOutcome:
    batches: int = 0
    rows: int = 0
    reports: int = 0
    evaluations: int = 0
    blobs: int = 0
    # False when the time budget ran out first: the caller runs it again (nothing is left half-done).
    finished: bool = True

    @property
    def deleted_anything(self) -> bool:
        return any((self.batches, self.rows, self.reports, self.evaluations, self.blobs))

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


@dataclass(frozen=True)
class Cutoffs:
    predictions: datetime | None  # batches wholly before this go; None keeps them all
    reports: datetime | None
    full_resolution: datetime  # evaluations before this (a UTC midnight) are thinned to one per day


def retention_cutoffs(deployment: Deployment, *, now: datetime) -> Cutoffs:
    def before(days: int | None) -> datetime | None:
        return None if days is None else now - timedelta(days=days)

    horizon = (now - timedelta(days=settings.METRIC_FULL_RESOLUTION_DAYS)).astimezone(UTC)
    # Whole UTC days only: a day the cutoff cut in two would keep one old run beside the new ones.
    return Cutoffs(
        predictions=before(deployment.retain_predictions_days),
        reports=before(deployment.retain_reports_days),
        full_resolution=horizon.replace(hour=0, minute=0, second=0, microsecond=0),
    )


def deployment_purge(*, deployment: Deployment, now: datetime | None = None, budget_seconds: float | None = None) -> PurgeOutcome:
    """Apply the deployment's retention: old batches with their index rows and files, old drift reports, and the
    evaluations past a year beyond one per day. Stops (finished=False) when the budget is spent."""
    now = now or timezone.now()
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    cutoffs = retention_cutoffs(deployment, now=now)
    outcome = PurgeOutcome()

    def out_of_time() -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            outcome.finished = False
        return not outcome.finished

    # Expiring first: what a killed run claimed is finished whatever the retention says now.
    while not out_of_time():
        expiring = list(
            PredictionBatch.objects.filter(deployment=deployment, state=PredictionBatch.State.EXPIRING)
            .order_by("pk").values_list("pk", flat=True)[:BATCHES_PER_CLAIM]
        )
        if not expiring and (cutoffs.predictions is None or not _claim_batches(deployment, cutoffs.predictions)):
            break
        for batch_id in expiring:
            _batch_delete(batch_id, outcome)
            if out_of_time():
                break
    while cutoffs.predictions is not None and not out_of_time() and _delete_calls(deployment, cutoffs.predictions):
        pass
    while cutoffs.reports is not None and not out_of_time() and _delete_reports(deployment, cutoffs.reports, outcome):
        pass
    while not out_of_time() and _thin_evaluations(deployment, cutoffs.full_resolution, outcome):
        pass
    _record(deployment, outcome, now=now)
    return outcome


def _delete_calls(deployment: Deployment, cutoff: datetime) -> int:
    ids = list(CallStats.objects.filter(deployment=deployment, at__lt=cutoff).order_by("pk")
               .values_list("pk", flat=True)[:CALLS_PER_DELETE])
    return CallStats.objects.filter(pk__in=ids).delete()[0] if ids else 0


def _claim_batches(deployment: Deployment, cutoff: datetime) -> int:
    """Mark the oldest batches wholly before the cutoff expiring. Pending batches are left to the indexer."""
    kept = [PredictionBatch.State.INDEXED, PredictionBatch.State.REJECTED]
    with transaction.atomic():
        # t_min too: the window index (deployment, t_min, t_max) then serves the scan.
        ids = list(
            PredictionBatch.objects.select_for_update(skip_locked=True)
            .filter(deployment=deployment, t_min__lt=cutoff, t_max__lt=cutoff, state__in=kept)
            .order_by("t_min", "pk").values_list("pk", flat=True)[:BATCHES_PER_CLAIM]
        )
        return PredictionBatch.objects.filter(pk__in=ids, state__in=kept).update(state=PredictionBatch.State.EXPIRING)


def _batch_delete(batch_id: int, outcome: PurgeOutcome) -> None:
    """Delete an expiring batch: its index rows a chunk at a time, then its row, then its file if unshared."""
    batch = PredictionBatch.objects.filter(pk=batch_id, state=PredictionBatch.State.EXPIRING).only(
        "pk", "deployment_id", "n_rows", "request_ids", "columns_sha256"
    ).first()
    if batch is None:  # another purge finished it
        return
    request_ids = _request_ids(batch)
    if request_ids is None:
        outcome.rows += _delete_rows_by_batch(batch)
        request_ids = []
    # In key order: each chunk then walks one stretch of the primary key's b-tree instead of pages all over it.
    request_ids = sorted(request_ids)
    for start in range(0, len(request_ids), ROWS_PER_TRANSACTION):
        outcome.rows += _delete_rows(batch, request_ids[start:start + ROWS_PER_TRANSACTION])
    with transaction.atomic(), connection.cursor() as cursor:
        # Raw: the ORM's cascade would look for index rows by batch, a scan of the whole table (no index on it).
        cursor.execute(
            f"DELETE FROM {PredictionBatch._meta.db_table} WHERE id = %s AND state = %s",
            [batch.pk, PredictionBatch.State.EXPIRING],
        )
        outcome.batches += cursor.rowcount
    if batch.columns_sha256:
        outcome.blobs += storage_collect(digests={batch.columns_sha256})


def _delete_rows(batch: PredictionBatch, request_ids: list[str]) -> int:
    """One chunk of the batch's index rows, by primary key (deployment, request_id), in its own transaction."""
    with transaction.atomic():
        if connection.vendor != "postgresql":
            return Prediction.objects.filter(
                deployment_id=batch.deployment_id, batch_id=batch.pk, request_id__in=request_ids
            ).delete()[0]
        with connection.cursor() as cursor:
            # One array parameter, not 5,000: planning an IN list of that length cost more than the delete.
            cursor.execute(
                f"DELETE FROM {Prediction._meta.db_table} WHERE deployment_id = %s AND request_id = ANY(%s)"
                " AND batch_id = %s",
                [batch.deployment_id, request_ids, batch.pk],
            )
            return cursor.rowcount


def _request_ids(batch: PredictionBatch) -> list[str] | None:
    """The batch's ids, by which its index rows are deleted through the primary key; None if unreadable."""
    if batch.columns_sha256 == "" and not bytes(batch.request_ids or b""):
        return []  # rejected: its columns are gone, and it never had index rows
    try:
        stored = selectors.stored_columns(batch, ("request_ids",))
        return batches.decode_ids(bytes(stored["request_ids"] or b""), batch.n_rows)
    except (storage.BlobMissingError, storage.BlobIntegrityError, ValueError) as exc:
        logger.warning("batch %s: ids unreadable (%s); deleting its index rows by batch", batch.pk, exc)
        return None


def _delete_rows_by_batch(batch: PredictionBatch) -> int:
    """The index rows of a batch whose ids cannot be read (its file is gone), ROWS_PER_TRANSACTION at a time.
    Slow (nothing indexes rows by batch, so each chunk scans the deployment's rows), and rare."""
    table, deleted = Prediction._meta.db_table, 0
    if connection.vendor != "postgresql":
        with transaction.atomic():
            return Prediction.objects.filter(deployment_id=batch.deployment_id, batch_id=batch.pk).delete()[0]
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table}"
                " WHERE deployment_id = %s AND batch_id = %s LIMIT %s))",
                [batch.deployment_id, batch.pk, ROWS_PER_TRANSACTION],
            )
            if cursor.rowcount == 0:
                return deleted
            deleted += cursor.rowcount


def _delete_reports(deployment: Deployment, cutoff: datetime, outcome: PurgeOutcome) -> int:
    with transaction.atomic():
        ids = list(
            DriftReport.objects.select_for_update(skip_locked=True)
            .filter(deployment=deployment, window_end__lt=cutoff)
            .order_by("window_end").values_list("pk", flat=True)[:REPORTS_PER_TRANSACTION]
        )
        if ids:
            # The ORM: its feature points go with it, and alerts raised on it keep their text without the link.
            DriftReport.objects.filter(pk__in=ids).delete()
    outcome.reports += len(ids)
    return len(ids)


def _thin_evaluations(deployment: Deployment, cutoff: datetime, outcome: PurgeOutcome) -> int:
    """Before the cutoff keep, per version, source, dataset and UTC day, the last successful run; delete the
    rest (and runs that never succeeded: they draw nothing). The same runs are kept whatever the chunking."""
    old = EvaluationRun.objects.filter(deployment=deployment, measured_at__lt=cutoff)
    ranked = old.filter(status=EvaluationRun.Status.SUCCEEDED).annotate(
        rank=Window(
            RowNumber(),
            partition_by=[F("version_id"), F("source"), F("dataset_id"), TruncDate("measured_at", tzinfo=UTC)],
            order_by=[F("measured_at").desc(), F("pk").desc()],
        )
    )
    ids = list(ranked.filter(rank__gt=1).values_list("pk", flat=True)[:EVALUATIONS_PER_TRANSACTION])
    ids += list(
        old.exclude(status=EvaluationRun.Status.SUCCEEDED).values_list("pk", flat=True)[
            : EVALUATIONS_PER_TRANSACTION - len(ids)
        ]
    )
    if ids:
        with transaction.atomic():
            EvaluationRun.objects.filter(pk__in=ids).delete()  # its metric points go with it
    outcome.evaluations += len(ids)
    return len(ids)


def _record(deployment: Deployment, outcome: PurgeOutcome, *, now: datetime) -> None:
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(purged_at=now, last_purge=outcome.as_dict())
        if outcome.deleted_anything:
            audit_record(action="retention.purge", actor=None, actor_label="retention", deployment=deployment,
                         obj=deployment, after=outcome.as_dict())
    deployment.purged_at, deployment.last_purge = now, outcome.as_dict()


def _days(field: str, value: object, *, floor: int, why: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not floor <= value <= MAX_RETENTION_DAYS:
        message = f"Keep {field.replace('_', ' ')} for a whole number of days from {floor} to {MAX_RETENTION_DAYS}{why}, or empty for ever."
        raise ValidationFailed(message, errors=[{"field": f"retain_{field}_days", "message": message}])
    return value


@transaction.atomic
def deployment_retention_configure(
    *, deployment: Deployment, predictions_days: int | None, reports_days: int | None, by: AbstractBaseUser
) -> Deployment:
    """How long stored predictions and drift reports are kept (None: for ever), audited. Predictions are kept
    at least as long as the evaluation window reads them, so retention never starves a scheduled evaluation."""
    window = max(deployment.evaluation_window_days, -(-deployment.drift_window_hours // 24), 1)
    predictions_days = _days("predictions", predictions_days, floor=window,
                             why=f" (the evaluation and drift windows read {window} days back)")
    reports_days = _days("reports", reports_days, floor=1, why="")
    stored = dict(
        Deployment.objects.select_for_update().values("retain_predictions_days", "retain_reports_days")
        .get(pk=deployment.pk)
    )
    deployment.retain_predictions_days, deployment.retain_reports_days = predictions_days, reports_days
    deployment.save(update_fields=["retain_predictions_days", "retain_reports_days"])
    audit_record(
        action="deployment.retention_configure", actor=by, deployment=deployment, obj=deployment, before=stored,
        after={"retain_predictions_days": predictions_days, "retain_reports_days": reports_days},
    )
    return deployment
