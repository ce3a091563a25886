"""Evaluation runs: started, completed (with their alerts) or failed."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from monitoring import alert_keys
from monitoring.models import (
    Alert,
    Dataset,
    Deployment,
    EvaluationRun,
    MaintenanceJob,
    MetricPoint,
    ModelVersion,
)
from monitoring.services.alerts import alert_raise, alert_resolve_key


def evaluation_complete(*, run: EvaluationRun, metrics: dict, raise_alerts: bool = True) -> EvaluationRun:
    """Store a finished run's metrics as time series and check the deployment's thresholds.

    Idempotent: completing a run twice rewrites its points instead of adding more.
    """
    from monitoring.metrics import SCALAR_METRICS

    deployment = run.deployment
    with transaction.atomic():
        run.metrics = metrics
        run.n_rows = int(metrics.get("n_rows", run.n_rows))
        run.status = EvaluationRun.Status.SUCCEEDED
        run.finished_at = timezone.now()
        run.error = ""
        run.save()
        run.points.all().delete()
        series = [name for name in SCALAR_METRICS if metrics.get(name) is not None]
        series += [name for name in metrics if name.startswith(("latency_", "throughput_")) and metrics[name] is not None]
        MetricPoint.objects.bulk_create(
            MetricPoint(
                deployment=deployment, version=run.version, run=run, source=run.source, name=name,
                value=float(metrics[name]), at=run.measured_at,
            )
            for name in series
        )
    # Only the serving version's numbers speak for the deployment's health; candidates are compared, not alerted on.
    if raise_alerts and run.version.status == ModelVersion.Status.ACTIVE:
        for metric, floor in deployment.metric_thresholds.items():
            value = metrics.get(metric)
            key = alert_keys.metric_key(metric=metric, source=run.source)
            if value is not None and value < floor:
                alert_raise(
                    deployment=deployment,
                    kind=Alert.Kind.METRIC_BELOW_THRESHOLD,
                    dedup_key=key,
                    severity=Alert.Severity.CRITICAL,
                    title=f"{metric} {value:.3f} is below {floor:.3f} on the {run.get_source_display().lower()}",
                    message=f"v{run.version.number} scored {value:.4f} on {run.n_rows} rows (floor {floor}).",
                    evaluation_run=run,
                    figures={
                        "metric": metric, "value": value, "floor": floor, "source": run.source, "n_rows": run.n_rows,
                        "version": run.version.number,
                        "window_start": run.window_start.isoformat() if run.window_start else None,
                        "window_end": run.window_end.isoformat() if run.window_end else None,
                    },
                )
            elif value is not None:
                alert_resolve_key(deployment=deployment, dedup_key=key)
    return run


def evaluation_start(
    *,
    version: ModelVersion,
    source: str,
    dataset: Dataset | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    measured_at: datetime | None = None,
    job: MaintenanceJob | None = None,
) -> EvaluationRun:
    """A running evaluation: the row exists before the work, so a crash leaves a trace."""
    return EvaluationRun.objects.create(
        deployment=version.deployment,
        version=version,
        source=source,
        dataset=dataset,
        window_start=window_start,
        window_end=window_end,
        status=EvaluationRun.Status.RUNNING,
        measured_at=measured_at or timezone.now(),
        job=job,
    )


def evaluation_runs_abandon(*, deployment: Deployment) -> int:
    """Close the scheduled runs of the deployment still "running" from an attempt that died (its worker was killed,
    or the database went away under it): failed, saying so. Called by the scheduled evaluation under its
    deployment lock, so none of them is still at work. Returns how many were closed."""
    return EvaluationRun.objects.filter(
        deployment=deployment, job__isnull=True, status=EvaluationRun.Status.RUNNING
    ).update(
        status=EvaluationRun.Status.FAILED, finished_at=timezone.now(),
        error="This evaluation stopped before it finished (its worker was lost); it was run again.",
    )


def evaluation_fail(*, run: EvaluationRun, error: str) -> EvaluationRun:
    run.status = EvaluationRun.Status.FAILED
    run.error = error[:2000]
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    return run
