"""What /metrics says about every deployment at once, read at scrape in a fixed number of queries (three,
whatever the number of deployments): a Prometheus scrape every 15 s must not cost a query per deployment.

- the deployments, each with its newest drift report's share, its rows received in the last hour, its newest
  labelled prediction's time and its active version's newest successful evaluation per source (correlated
  subqueries in one statement, each an index lookup);
- the unresolved alerts, counted per deployment and severity;
- the indexing backlog: pending batches, their rows and the oldest one's age, per deployment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
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
    # The active version's newest successful run per source: evaluation_series_idx (deployment, measured_at), read
    # backwards until a run of that source matches. (A window over every run cost 200 ms at 100 deployments.)
    sources = [str(source) for source in EvaluationRun.Source.values]
    newest_runs = {
        f"run_{source}": Subquery(
            EvaluationRun.objects.filter(
                deployment=OuterRef("pk"), source=source, status=EvaluationRun.Status.SUCCEEDED,
                version__status=ModelVersion.Status.ACTIVE,
            ).order_by("-measured_at").values("metrics")[:1]
        )
        for source in sources
    }
    rows = Deployment.objects.order_by().annotate(
        drift_share=Subquery(newest_report.values("share_drifted")[:1]),
        newest_label=Subquery(newest_label.values("timestamp")[:1]),
        last_hour=Coalesce(Subquery(last_hour), 0),
        **newest_runs,
    ).values("pk", "slug", "drift_share", "newest_label", "last_hour", *newest_runs)
    figures = {}
    for row in rows:
        newest = row["newest_label"]
        figure = DeploymentFigures(
            slug=row["slug"], drift_share=row["drift_share"], predictions_last_hour=int(row["last_hour"]),
            label_lag_seconds=None if newest is None else max(0.0, (now - newest).total_seconds()),
        )
        for source in sources:
            metrics = _as_dict(row[f"run_{source}"])
            if isinstance(metrics.get("accuracy"), int | float):
                figure.accuracy[source] = float(metrics["accuracy"])
            if isinstance(metrics.get("f1_macro"), int | float):
                figure.f1_macro[source] = float(metrics["f1_macro"])
        figures[row["pk"]] = figure
    return figures


def _as_dict(value: Any) -> dict[str, Any]:
    """A JSON column read through a subquery: decoded already, or its text (the backend decides)."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}
