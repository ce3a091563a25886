"""The per-row index (Prediction): written with a small batch, or built after a large one is accepted.

A batch of up to services.ingestion.INDEX_IN_REQUEST_UP_TO rows writes its index rows in the request, so a reused
id is a 409 at once, unless its sender asked `Prefer: respond-async` (the serving client does). That one, and a
larger one (a file upload), is stored as its columns only: inserting a row per prediction into the
(deployment, request_id) b-tree costs 3–7 µs each here, five of the seven seconds of a 1M-row upload (README,
"Ingestion and storage"). Its index is built here, in a worker, moments later, for every pending batch of a deployment in arrival order. A batch whose ids are
already indexed is rejected: its columns are dropped and its errors kept, where the client and the
dashboard can read them.

Readers that need the index (the label join) call `index_pending` first, so they never miss a row.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from monitoring import batches, pgcopy, selectors, storage
from monitoring.models import Deployment, Prediction, PredictionBatch

# One transaction indexes at most about this many rows, so a backlog is worked off in bounded steps.
ROWS_PER_TRANSACTION = 2_000_000


def pending_flag(deployment_id: int) -> str:
    """The Redis key saying an indexer task is queued for the deployment and has not started yet."""
    return f"watchkeeper:index-queued:{deployment_id}"


@dataclass
class IndexOutcome:
    indexed_batches: int = 0
    indexed_rows: int = 0
    rejected: list[PredictionBatch] = field(default_factory=list)
    # wait=False found another indexer holding the deployment: nothing was done.
    busy: bool = False


def index_pending(
    *, deployment_id: int, wait: bool = True, on_reject: Callable[[PredictionBatch], None] | None = None,
    drain_s: float = 0.0,
) -> IndexOutcome:
    """Index every pending batch of the deployment, oldest first. Idempotent; safe to call from anywhere.

    With drain_s, batches stored while it works are indexed too, by further transactions, for up to that many
    seconds: under a stream of batches the indexer at work takes them, where their own tasks would find it busy
    and come back seconds later (workers.tasks.INDEX_BUSY_RETRY_SECONDS).

    Indexers of one deployment take turns on its row lock: FOR NO KEY UPDATE, which does not block the
    key-share lock that storing a new batch takes on its deployment. With wait=False a caller that finds another
    indexer at work returns at once with outcome.busy set. on_reject runs for each rejected batch inside the
    transaction that rejects it, so whatever it records (an alert) commits with the rejection or not at all.
    """
    outcome = IndexOutcome()
    drain_until = time.monotonic() + drain_s
    while True:
        with transaction.atomic():
            locked = Deployment.objects.select_for_update(skip_locked=not wait, no_key=True).filter(pk=deployment_id)
            if not locked.values_list("pk", flat=True):
                outcome.busy = not wait and Deployment.objects.filter(pk=deployment_id).exists()
                return outcome
            pending = list(
                PredictionBatch.objects.filter(deployment_id=deployment_id, state=PredictionBatch.State.PENDING)
                .order_by("pk")
                .values_list("pk", "n_rows")
            )
            if not pending:
                return outcome
            chosen, rows = [], 0
            for pk, n_rows in pending:
                if chosen and rows + n_rows > ROWS_PER_TRANSACTION:
                    break
                chosen.append(pk)
                rows += n_rows
            for batch in PredictionBatch.objects.filter(pk__in=chosen).order_by("pk").only(
                "pk", "deployment_id", "n_rows", "request_ids", "timestamps_us", "result", "columns_sha256"
            ):
                if _index_batch(batch):
                    outcome.indexed_batches += 1
                    outcome.indexed_rows += batch.n_rows
                else:
                    outcome.rejected.append(batch)
                    if on_reject is not None:
                        on_reject(batch)
        if len(chosen) == len(pending) and time.monotonic() >= drain_until:
            return outcome


def _index_batch(batch: PredictionBatch) -> bool:
    """Write the batch's index rows and mark it indexed; or, if some ids are taken, reject it. True if indexed."""
    try:
        stored = selectors.stored_columns(batch, ("request_ids", "timestamps_us"))
    except (storage.BlobMissingError, storage.BlobIntegrityError) as exc:
        # Its rows cannot be read, ever: reject it, so that the batches behind it are not held up.
        _reject(batch, message=f"Its columns could not be read from the media store ({exc}), so nothing of it is "
                "kept. Send the file again.", errors=[])
        return False
    request_ids = batches.decode_ids(stored["request_ids"], batch.n_rows)
    timestamps_us = np.frombuffer(stored["timestamps_us"], dtype="<i8").astype(np.int64)
    try:
        with transaction.atomic():  # a savepoint: a conflict undoes this batch's rows only
            write_rows(deployment_id=batch.deployment_id, batch_id=batch.pk, request_ids=request_ids,
                       timestamps_us=timestamps_us)
    except IntegrityError:
        taken = taken_ids(batch.deployment_id, request_ids)
        _reject(batch, errors=conflict_errors(request_ids, taken), message=(
            f"{len(taken)} id(s) were already stored by another batch, so this batch was rejected when it was "
            "indexed and nothing of it is kept. Resend it with fresh ids and a new Idempotency-Key."
        ))
        return False
    PredictionBatch.objects.filter(pk=batch.pk).update(state=PredictionBatch.State.INDEXED, indexed_at=timezone.now())
    return True


def write_rows(*, deployment_id: int, batch_id: int, request_ids: list[str], timestamps_us: np.ndarray) -> None:
    """The index rows of one batch. Raises IntegrityError if an id is taken; the caller's transaction or
    savepoint then undoes them all."""
    if connection.vendor == "postgresql":
        _copy_rows(deployment_id, batch_id, request_ids, timestamps_us)
    else:
        _orm_rows(deployment_id, batch_id, request_ids, timestamps_us)


def _copy_rows(deployment_id: int, batch_id: int, request_ids: list[str], timestamps_us: np.ndarray) -> None:
    # Sorted by id, always. Every writer of the index (requests, indexers) then inserts shared ids in one
    # order, so two batches holding the same ids queue on the first and the later gets its conflict; in
    # arrival order they could each hold one and deadlock (a 500). And a large batch's rows reach the
    # primary-key b-tree leaf by leaf: 1M ids into a table already holding 1M took 4.7 s sorted, 8.7 s not.
    # The sort costs 0.2 ms per 1,000 ids, 0.6 s per million.
    order = np.argsort(np.array(request_ids), kind="stable")
    data = pgcopy.index_rows(
        deployment_id=deployment_id, batch_id=batch_id, rows=order, timestamps_us=timestamps_us[order],
        joined_ids="\n".join([request_ids[i] for i in order]).encode(),
    )
    # copy_expert is psycopg2's own: wrap_database_errors turns its errors into Django's (IntegrityError).
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.copy_expert(
            f"COPY {Prediction._meta.db_table} (deployment_id, timestamp, batch_id, row, request_id) "
            "FROM STDIN (FORMAT binary)",
            io.BytesIO(data), 1 << 20,  # 1 MB CopyData messages; positional for Django's debug cursor
        )


def _orm_rows(deployment_id: int, batch_id: int, request_ids: list[str], timestamps_us: np.ndarray) -> None:
    """SQLite (the embedded demo)."""
    Prediction.objects.bulk_create(
        (
            Prediction(deployment_id=deployment_id, request_id=request_id, timestamp=batches.us_to_datetime(t),
                       batch_id=batch_id, row=i)
            for i, (request_id, t) in enumerate(zip(request_ids, timestamps_us))
        ),
        batch_size=500,
    )


def taken_ids(deployment_id: int, request_ids: list[str]) -> set[str]:
    """The ids among request_ids that the index already holds for the deployment."""
    if connection.vendor == "postgresql":
        # One array parameter: an IN list of 1,000 parameters costs more to build and plan than to run.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT request_id FROM {Prediction._meta.db_table} WHERE deployment_id = %s AND request_id = ANY(%s)",
                [deployment_id, request_ids],
            )
            return {request_id for (request_id,) in cursor.fetchall()}
    taken: set[str] = set()
    # Chunks keep each IN list well inside SQLite's parameter limit.
    for start in range(0, len(request_ids), 500):
        chunk = request_ids[start : start + 500]
        taken |= set(
            Prediction.objects.filter(deployment_id=deployment_id, request_id__in=chunk).values_list("request_id", flat=True)
        )
    return taken


def conflict_errors(request_ids: list[str], taken: set[str]) -> list[dict]:
    return [
        {"row": i, "field": "id", "message": f"id {request_id!r} is already stored in another batch"}
        for i, request_id in enumerate(request_ids)
        if request_id in taken
    ][: batches.MAX_ERRORS]


def _reject(batch: PredictionBatch, *, message: str, errors: list[dict]) -> None:
    batch.result = batch.result | {"status": "rejected", "message": message, "errors": errors}
    batch.state = PredictionBatch.State.REJECTED
    # Its columns go: a rejected batch must not count in any window. The row stays as the record of why. A
    # file in the media store is left to storage_collect_garbage: an identical batch may share it.
    empty = b""
    PredictionBatch.objects.filter(pk=batch.pk).update(
        state=batch.state, result=batch.result, timestamps_us=empty, features=empty, predicted=empty,
        probabilities=None, request_ids=empty, columns_sha256="", indexed_at=timezone.now(),
    )
