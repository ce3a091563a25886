"""What /metrics says about every deployment at once, read at scrape in a fixed number of queries (four,
whatever the number of deployments): a Prometheus scrape every 15 s must not cost a query per deployment.

- the deployments, each with its newest drift report's share, its rows received in the last hour and its newest
  labelled prediction's time (correlated subqueries in one statement, each an index lookup);
- the newest successful evaluation of each deployment's active version per source (a correlated subquery per
  source, each one probe of evaluation_latest_idx: a window function ranked every run of the fleet, 200 ms at 100
  deployments with a month of hourly runs each, bench/metrics.py);
- the unresolved alerts, counted per deployment and severity;
- the indexing backlog: pending batches, their rows and the oldest one's age, per deployment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce, JSONObject
from django.utils import timezone

from monitoring.models import (
    Alert,
    Deployment,
    DriftReport,
    EvaluationRun,
    ModelVersion,
    Prediction,
    PredictionBatch,
)


@dataclass
class DeploymentFigures:
    slug: str
    drift_share: float | None = None  # share of features drifted in the newest report
    predictions_last_hour: int = 0
    # now − the timestamp of the newest labelled prediction: how far the labels trail the traffic.
    label_lag_seconds: float | None = None
    accuracy: dict[str, float] = field(default_factory=dict)  # by evaluation source
    f1_macro: dict[str, float] = field(default_factory=dict)
    open_alerts: dict[str, int] = field(default_factory=dict)  # by severity
    backlog_batches: int = 0
    backlog_rows: int = 0
    backlog_oldest_seconds: float = 0.0


def fleet_figures(*, now: datetime | None = None) -> list[DeploymentFigures]:
    now = now or timezone.now()
    figures = _deployments(now)
    by_id = {pk: figure for pk, figure in figures.items()}
    for row in _latest_evaluations():
        figure = by_id.get(row["deployment_id"])
        if figure is None:
            continue
        if isinstance(row["accuracy"], int | float):
            figure.accuracy[row["source"]] = float(row["accuracy"])
        if isinstance(row["f1_macro"], int | float):
            figure.f1_macro[row["source"]] = float(row["f1_macro"])
    for deployment_id, severity, n in (
        Alert.objects.unresolved().values("deployment_id", "severity").annotate(n=Count("id"))
        .values_list("deployment_id", "severity", "n").order_by()
    ):
        if deployment_id in by_id:
            by_id[deployment_id].open_alerts[severity] = n
    for deployment_id, n, rows, oldest in (
        PredictionBatch.objects.filter(state=PredictionBatch.State.PENDING).values("deployment_id")
        .annotate(n=Count("id"), n_rows_sum=Sum("n_rows"), oldest=Min("received_at"))
        .values_list("deployment_id", "n", "n_rows_sum", "oldest").order_by()
    ):
        if deployment_id in by_id:
            figure = by_id[deployment_id]
            figure.backlog_batches, figure.backlog_rows = n, rows or 0
            figure.backlog_oldest_seconds = max(0.0, (now - oldest).total_seconds())
    return sorted(figures.values(), key=lambda figure: figure.slug)


def _deployments(now: datetime) -> dict[int, DeploymentFigures]:
    newest_report = DriftReport.objects.filter(deployment=OuterRef("pk")).order_by("-window_end")
    # Served by prediction_labelled_idx (deployment, timestamp), read backwards: one index probe each.
    newest_label = (
        Prediction.objects.filter(deployment=OuterRef("pk"), label_index__isnull=False).order_by("-timestamp")
    )
    last_hour = (
        PredictionBatch.objects.live().filter(deployment=OuterRef("pk"), received_at__gte=now - timedelta(hours=1))
        .order_by().values("deployment").annotate(total=Sum("n_rows")).values("total")
    )
    rows = Deployment.objects.order_by().annotate(
        drift_share=Subquery(newest_report.values("share_drifted")[:1]),
        newest_label=Subquery(newest_label.values("timestamp")[:1]),
        last_hour=Coalesce(Subquery(last_hour), 0),
    ).values_list("pk", "slug", "drift_share", "newest_label", "last_hour")
    return {
        pk: DeploymentFigures(
            slug=slug, drift_share=drift_share, predictions_last_hour=int(last_hour_rows),
            label_lag_seconds=None if newest is None else max(0.0, (now - newest).total_seconds()),
        )
        for pk, slug, drift_share, newest, last_hour_rows in rows
    }


def _latest_evaluations() -> list[dict[str, Any]]:
    """The newest successful run of each deployment's active version, per source: one row each."""
    Source = EvaluationRun.Source

    def newest(source: str) -> Subquery:
        runs = EvaluationRun.objects.filter(version=OuterRef("pk"), source=source, status=EvaluationRun.Status.SUCCEEDED)
        figures = JSONObject(accuracy="metrics__accuracy", f1_macro="metrics__f1_macro")
        return Subquery(runs.order_by("-measured_at").values_list(figures)[:1])

    # One row per active version (at most one per deployment), a column per source: Postgres has no skip scan,
    # so this, not DISTINCT ON over the runs, is what reads only the newest run of each series.
    rows = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).order_by().annotate(
        **{f"newest_{source}": newest(source) for source in Source.values}
    ).values_list("deployment_id", *(f"newest_{source}" for source in Source.values))
    return [
        {"deployment_id": deployment_id, "source": source, **figures}
        for deployment_id, *newest_by_source in rows
        for source, figures in zip(Source.values, newest_by_source)
        if figures is not None
    ]
