"""Shadow replay: a new candidate run over the recent production inputs, beside what the active version answered.

No production risk and no serving change: the inputs and the active version's predictions are already stored
(the last `drift_window_hours`, the newest SHADOW_REPLAY_MAX_ROWS of them). Reported, for the compare page:
- agreement: the share of rows where the candidate predicts the class the logged prediction had;
- the shift in predicted classes (each class's share, logged vs candidate);
- the candidate's estimated accuracy and macro-F1 from its own probabilities (CBPE, monitoring/drift/concept.py),
  calibrated on the evaluation set when the deployment has a labelled one;
- where labels have arrived for some of those rows: both versions' measured accuracy and macro-F1 on them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from monitoring import selectors, services
from monitoring.blobs import runner_for
from monitoring.drift.concept import calibrators, estimate_performance
from monitoring.metrics import metrics_from_indices
from monitoring.models import ShadowReplay

logger = logging.getLogger(__name__)


def _calibration(replay: ShadowReplay, labels: list[str]):
    """Isotonic maps fitted on the candidate's probabilities over the labelled evaluation set, if there is one."""
    dataset = replay.deployment.evaluation_dataset
    if dataset is None or not dataset.has_labels:
        return None
    X, y = services.dataset_load(dataset)
    predictions = runner_for(replay.candidate).predict(np.asarray(X), probability_dtype=np.float32)
    if predictions.probabilities is None or y is None:
        return None
    return calibrators(np.asarray(predictions.probabilities), np.asarray(y).astype(str), labels)


def shadow_replay_compute(*, replay_id: int) -> None:
    """Compute a queued replay and store it. Calling it again for the same row does nothing."""
    if not services.shadow_replay_claim(replay_id=replay_id):
        return
    replay = ShadowReplay.objects.select_related("deployment", "candidate", "deployment__evaluation_dataset").get(pk=replay_id)
    deployment = replay.deployment
    labels = [str(c) for c in deployment.class_labels]
    end = timezone.now()
    start = end - timedelta(hours=deployment.drift_window_hours)
    try:
        window = selectors.production_window(deployment=deployment, start=start, end=end)
        cap = replay.row_cap or settings.SHADOW_REPLAY_MAX_ROWS
        capped = len(window.X) > cap
        if capped:
            window = window.newest(cap)
        n = len(window.X)
        results: dict = {"capped": capped, "labelled_rows": 0}
        if n:
            predictions = runner_for(replay.candidate).predict(window.X, probability_dtype=np.float32)
            candidate = predictions.label_indices(labels)
            logged = np.asarray(window.predicted_index, dtype=np.int64)
            results |= {
                "agreement": float(np.mean(candidate == logged)),
                "class_shift": [
                    {"label": label, "logged": float(np.mean(logged == k)), "candidate": float(np.mean(candidate == k))}
                    for k, label in enumerate(labels)
                ],
                "first_row_at": window.first_timestamp().isoformat(),
            }
            if predictions.probabilities is not None:
                maps = _calibration(replay, labels)
                results["estimated"] = estimate_performance(np.asarray(predictions.probabilities), maps).as_dict()
            results |= _labelled(deployment, window, candidate, logged, labels)
    except DatabaseError:
        ShadowReplay.objects.filter(pk=replay_id, status=ShadowReplay.Status.RUNNING).update(status=ShadowReplay.Status.QUEUED)
        raise  # transient: the task's retry claims it again
    except Exception:
        logger.exception("shadow replay %s of v%s failed", replay_id, replay.candidate.number)
        services.shadow_replay_fail(replay_id=replay_id, error="The replay could not be computed; the worker's log has the details.")
        return
    services.shadow_replay_complete(replay_id=replay_id, results=results, n_rows=n, window_start=start, window_end=end)


def _labelled(deployment, window, candidate: np.ndarray, logged: np.ndarray, labels: list[str]) -> dict:
    """Both versions measured on the replayed rows whose true labels have arrived (joined by request id)."""
    labelled = selectors.production_window(
        deployment=deployment, start=window.first_timestamp(), end=timezone.now(), labelled_only=True
    )
    if not len(labelled.X):
        return {}
    position = {rid: i for i, rid in enumerate(window.request_ids)}
    rows = [(position[rid], j) for j, rid in enumerate(labelled.request_ids) if rid in position]
    if not rows:
        return {}
    replayed, truth_rows = (np.asarray(part) for part in zip(*rows, strict=True))
    truth = np.asarray(labelled.label_index, dtype=np.int64)[truth_rows]
    measured = {
        name: metrics_from_indices(truth, answers[replayed], labels=labels)
        for name, answers in (("logged", logged), ("candidate", candidate))
    }
    return {
        "labelled_rows": int(len(truth)),
        "labelled": {name: {"accuracy": m.accuracy, "f1_macro": m.f1_macro} for name, m in measured.items()},
    }
