"""The approval page's statistics: both versions run over the same labelled rows, once, here on a worker.

A comparison row (monitoring.models.VersionComparisonResult) is queued by services.comparisons_request, when a
candidate is registered or when the page finds none for the current active version and window. Its task claims
it with a conditional update (queued -> running), so a redelivered task does nothing. The models' answers are
reduced to the (truth, active, candidate) table of class counts (monitoring/comparison.py) and only the
statistics are stored: the page reads a few kilobytes of JSON, whatever the size of the window.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError
from django.utils import timezone

from monitoring import selectors, services
from monitoring.blobs import runner_for
from monitoring.comparison import class_table, compare_table
from monitoring.metrics import encode
from monitoring.models import VersionComparisonResult
from monitoring.storage import BlobIntegrityError, BlobMissingError

logger = logging.getLogger(__name__)

Status = VersionComparisonResult.Status


def _rows(result: VersionComparisonResult, now: datetime) -> tuple[np.ndarray, np.ndarray, datetime | None, datetime | None]:
    """(X, true class indices, window start, window end) of the comparison's source."""
    labels = [str(c) for c in result.deployment.class_labels]
    if result.source == VersionComparisonResult.Source.EVALUATION_SET:
        X, y = services.dataset_load(result.dataset)
        if y is None:
            raise ValueError(f"The evaluation set {result.dataset.name!r} has no labels.")
        return np.asarray(X), encode(np.asarray(y), labels), None, None
    # Never the rows either model was trained on: a retrain holds its last days out for exactly this.
    start = now - timedelta(days=result.window_days)
    trained = selectors.trained_until([result.active, result.candidate])
    start = max(start, trained) if trained else start
    window = selectors.production_window(deployment=result.deployment, start=start, end=now, labelled_only=True)
    assert window.label_index is not None  # labelled_only windows always carry it
    return window.X, window.label_index, start, now


def _plain_words(exc: Exception) -> str:
    """What the page shows; the engine's own text stays in the log."""
    if isinstance(exc, (BlobIntegrityError, BlobMissingError)):
        return "A stored file cannot be used (it is missing or does not match its checksum)."
    if isinstance(exc, SoftTimeLimitExceeded):
        return "The comparison ran past its time limit and was stopped."
    return "The comparison could not be computed; the worker's log has the details."


def comparison_compute(*, result_id: int) -> None:
    """Compute a queued comparison and store its statistics. Calling it again for the same row does nothing."""
    now = timezone.now()
    if not VersionComparisonResult.objects.filter(pk=result_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=now
    ):
        return
    result = VersionComparisonResult.objects.select_related(
        "deployment", "active", "candidate", "dataset"
    ).get(pk=result_id)
    labels = [str(c) for c in result.deployment.class_labels]
    try:
        X, y_index, start, end = _rows(result, now)
        statistics = None
        if len(X):
            # float32 probabilities: the models' own precision, half the memory of a widened million-row copy.
            active, candidate = (
                runner_for(version).predict(X, probability_dtype=np.float32).label_indices(labels)
                for version in (result.active, result.candidate)
            )
            statistics = compare_table(class_table(y_index, active, candidate, len(labels)), labels).as_dict()
    except DatabaseError:
        # Transient: put it back, so the task's retry can claim it again (if the database lets us).
        try:
            VersionComparisonResult.objects.filter(pk=result_id, status=Status.RUNNING).update(status=Status.QUEUED)
        except DatabaseError:
            pass  # the page queues it again once it has been "running" for COMPARISON_LOST_AFTER
        raise
    except Exception as exc:
        logger.exception("comparison %s (v%s against v%s) failed", result_id, result.candidate.number, result.active.number)
        services.comparison_fail(result_id=result_id, error=_plain_words(exc))
        return
    services.comparison_complete(
        result_id=result_id, statistics=statistics, n_rows=len(X), window_start=start, window_end=end
    )
