"""Evaluating a model version: quality on labelled rows, and latency, stored as an EvaluationRun.

Two sources of labelled rows:
- the deployment's evaluation set (a stored dataset), and
- the labelled production window: stored predictions with window_start <= timestamp < window_end
  whose ground truth has arrived.

When a source has no rows (no evaluation set, or no labelled traffic in the window) there is nothing
to measure, so no run is created and the functions return None / an empty list. A scheduled
evaluation of a quiet deployment then leaves no trail of failed runs; a real failure (a file that
fails verification, a model that errors) does leave a failed run with the error in plain words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from django.db import DatabaseError
from django.utils import timezone

from monitoring import selectors, services
from monitoring.blobs import runner_for
from monitoring.metrics import encode, metrics_by_version, metrics_from_indices
from monitoring.models import Dataset, Deployment, EvaluationRun, MaintenanceJob, ModelVersion
from monitoring.runtime import measure_latency
from monitoring.storage import BlobIntegrityError, BlobMissingError

logger = logging.getLogger(__name__)

# Latency: 200 single-row calls give a stable p99 (two samples above it) in well under a second for these models.
LATENCY_CALLS = 200
LATENCY_WARMUP = 20
# Throughput at the batch size a client sending batches would use; 50 calls of 64 rows are enough to average.
THROUGHPUT_BATCH = 64
THROUGHPUT_CALLS = 50
# Timing cycles through real rows; 1,024 of them are plenty and keep the copy small for a large window.
LATENCY_ROWS = 1024


def _aligned_probabilities(
    probabilities: np.ndarray | None, model_labels: list[str], labels: list[str]
) -> np.ndarray | None:
    """Reorder probability columns from the model's class order to the deployment's; a class the model
    never predicts gets a column of zeros. None when the columns cannot be matched to classes."""
    if probabilities is None or probabilities.ndim != 2 or probabilities.shape[1] != len(model_labels):
        return None
    if not set(model_labels) <= set(labels):
        return None
    if list(model_labels) == list(labels):
        return probabilities  # already in the deployment's order: no million-row copy
    aligned = np.zeros((len(probabilities), len(labels)), dtype=probabilities.dtype)
    for j, label in enumerate(labels):
        if label in model_labels:
            aligned[:, j] = probabilities[:, model_labels.index(label)]
    return aligned


def measure(
    *, version: ModelVersion, X: np.ndarray, y: np.ndarray, labels: list[str], latency: bool,
    y_index: np.ndarray | None = None,
) -> dict:
    """Quality metrics of `version` on (X, y), then, separately and after warm-up, its latency and throughput.

    y_index (class indices of y, as a production window carries them) spares encoding a million strings.
    """
    runner = runner_for(version)
    labels = [str(label) for label in labels]
    # float32: the model's own values; widening a million rows to float64 costs 80 MB and adds no precision.
    predictions = runner.predict(X, probability_dtype=np.float32)
    probabilities = _aligned_probabilities(predictions.probabilities, [str(c) for c in version.class_labels], labels)
    metrics = metrics_from_indices(
        y_index if y_index is not None else encode(y, labels), predictions.label_indices(labels),
        labels=labels, probabilities=probabilities,
    ).as_dict()
    metrics["size_bytes"] = version.size_bytes
    if latency:
        sample = X[:LATENCY_ROWS]
        single = measure_latency(runner, sample, batch_size=1, warmup=LATENCY_WARMUP, calls=LATENCY_CALLS)
        batched = measure_latency(runner, sample, batch_size=THROUGHPUT_BATCH, warmup=5, calls=THROUGHPUT_CALLS)
        metrics |= {
            "latency_p50_ms": single.p50_ms,
            "latency_p95_ms": single.p95_ms,
            "latency_p99_ms": single.p99_ms,
            "throughput_rows_per_s": batched.throughput_rows_per_s,
            # The same figures at the other batch size: a client calling one row at a time sees these.
            "throughput_b1_rows_per_s": single.throughput_rows_per_s,
            "latency_b64_p50_ms": batched.p50_ms,
            "latency_b64_p95_ms": batched.p95_ms,
            "latency_b64_p99_ms": batched.p99_ms,
        }
    return metrics


def _describe(exc: Exception) -> str:
    if isinstance(exc, (BlobIntegrityError, BlobMissingError)):
        return f"The stored file cannot be used: {exc}."
    return f"{type(exc).__name__}: {exc}"


# The production sources and the length of their window, ending now.
PRODUCTION_WINDOW_DAYS = {
    EvaluationRun.Source.PRODUCTION: lambda deployment: deployment.evaluation_window_days,
    EvaluationRun.Source.PRODUCTION_DAY: lambda deployment: 1,
}


def _load_labelled(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    X, y = services.dataset_load(dataset)
    if y is None:
        raise ValueError(f"The evaluation dataset {dataset.name!r} has no labels.")
    return X, y


def _finish(
    run: EvaluationRun, *, X: np.ndarray, y: np.ndarray, latency: bool, raise_alerts: bool, y_index: np.ndarray | None = None,
    extra: dict | None = None,
) -> EvaluationRun:
    try:
        metrics = measure(
            version=run.version, X=X, y=y, labels=run.deployment.class_labels, latency=latency, y_index=y_index
        ) | (extra or {})
    except DatabaseError:
        raise  # transient: the task retries; there is no database to record a failure in anyway
    except Exception as exc:
        # The run row is the record of what went wrong; one broken version must not stop the others.
        logger.exception("evaluation %s of %s failed", run.pk, run.version)
        return services.evaluation_fail(run=run, error=_describe(exc))
    return services.evaluation_complete(run=run, metrics=metrics, raise_alerts=raise_alerts)


def evaluate_versions(
    *,
    versions: Sequence[ModelVersion],
    source: str,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    measured_at: datetime | None = None,
    job: MaintenanceJob | None = None,
    latency: bool = True,
    raise_alerts: bool = True,
) -> list[EvaluationRun]:
    """Evaluate versions of one deployment on exactly the same rows, loaded once. [] when there are no rows."""
    if not versions:
        return []
    deployment: Deployment = versions[0].deployment
    if any(v.deployment_id != deployment.pk for v in versions):
        raise ValueError("versions of different deployments cannot share an evaluation")
    rows: tuple[np.ndarray, np.ndarray] | None = None  # production rows are read before any run exists
    extra: dict = {}  # stored with each run's metrics
    y_index: np.ndarray | None = None
    if source == EvaluationRun.Source.EVALUATION_SET:
        dataset = deployment.evaluation_dataset
        if dataset is None:
            return []
        window_start = window_end = None
        measured_at = measured_at or timezone.now()
    elif source in PRODUCTION_WINDOW_DAYS:
        dataset = None
        window_end = window_end or timezone.now()
        window_start = window_start or window_end - timedelta(days=PRODUCTION_WINDOW_DAYS[source](deployment))
        window = selectors.production_window(
            deployment=deployment, start=window_start, end=window_end, labelled_only=True
        )
        if len(window.X) == 0:
            return []
        rows, y_index = (window.X, window.labels), window.label_index
        measured_at = measured_at or window_end
        served = selectors.served_versions(window)
        if len(np.unique(served)) > 1:  # more than one version served in the window: what each one answered
            extra = {"served_by_version": metrics_by_version(
                window.label_index, window.predicted_index, served, labels=[str(c) for c in deployment.class_labels]
            )}
    else:
        raise ValueError(f"unknown evaluation source {source!r}")

    runs = [
        services.evaluation_start(
            version=version, source=source, dataset=dataset, window_start=window_start, window_end=window_end,
            measured_at=measured_at, job=job,
        )
        for version in versions
    ]
    if rows is None:
        try:
            rows = _load_labelled(dataset)
        except DatabaseError:
            raise
        except Exception as exc:
            logger.exception("loading evaluation dataset %s failed", dataset.pk)
            return [services.evaluation_fail(run=run, error=_describe(exc)) for run in runs]
    X, y = rows
    return [_finish(run, X=X, y=y, latency=latency, raise_alerts=raise_alerts, y_index=y_index, extra=extra) for run in runs]


def evaluate_version(
    *,
    version: ModelVersion,
    source: str,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    measured_at: datetime | None = None,
    job: MaintenanceJob | None = None,
    latency: bool = True,
    raise_alerts: bool = True,
) -> EvaluationRun | None:
    """Evaluate one version on one source. None when the source has no rows (see the module docstring).

    The production window defaults to the last `deployment.evaluation_window_days` days; its run is
    measured at the window's end, an evaluation-set run at the time it runs.
    """
    runs = evaluate_versions(
        versions=[version], source=source, window_start=window_start, window_end=window_end,
        measured_at=measured_at, job=job, latency=latency, raise_alerts=raise_alerts,
    )
    return runs[0] if runs else None


def evaluate_deployment(*, deployment: Deployment) -> list[EvaluationRun]:
    """The scheduled evaluation: the active version on the evaluation set, on the labelled traffic of the
    last 24 hours and on that of the deployment's evaluation window (a week by default).

    Threshold alerts go by the evaluation set and the longer window: a day of labels is often too few
    rows for a floor to mean anything, while its line on the chart shows a drop first.
    """
    active = deployment.active_version()
    if active is None:
        return []
    Source = EvaluationRun.Source
    runs = evaluate_versions(versions=[active], source=Source.EVALUATION_SET)
    if deployment.evaluation_window_days > 1:
        runs += evaluate_versions(versions=[active], source=Source.PRODUCTION_DAY, raise_alerts=False)
    return runs + evaluate_versions(versions=[active], source=Source.PRODUCTION)
