"""The overview page: every deployment a user can see, each with its summary and a sparkline, in a fixed
number of queries however many deployments there are (deployment_summary, once per deployment, was six each)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from monitoring.models import Alert, EvaluationRun, MetricPoint, ModelVersion, ServingPeriod
from monitoring.selectors.access import deployments_visible_to
from monitoring.selectors.deployments import DeploymentSummary, describe_rows, health_of
from monitoring.selectors.traffic import prediction_counts_for

# The sparkline's span: a week shows a trend without a 30-day chart's detail.
SPARKLINE_DAYS = 7


@dataclass(frozen=True)
class OverviewRow:
    summary: DeploymentSummary
    # The serving version's accuracy over the last SPARKLINE_DAYS, oldest first: on the labelled production
    # window its alerts go by, or on the evaluation set for a deployment without labelled traffic.
    sparkline: list[tuple[datetime, float]]
    sparkline_source: str  # "labelled production" or "evaluation set"; "" when there are no points


def _candidate_counts():
    candidates = (
        ModelVersion.objects.filter(deployment=OuterRef("pk"), status=ModelVersion.Status.CANDIDATE)
        .order_by().values("deployment").annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(candidates, output_field=IntegerField()), 0)


def _headline_runs(active_ids: list[int]) -> dict[int, EvaluationRun]:
    """headline_run for each active version: its latest scheduled run on production, else on the evaluation set."""
    Source = EvaluationRun.Source
    # Two queries: the latest run id per (version, source) as subqueries (portable: SQLite has no DISTINCT ON),
    # then the winners' runs with their metrics (per-class arrays).
    def latest(source: str) -> Subquery:
        return Subquery(
            EvaluationRun.objects.filter(
                version_id=OuterRef("pk"), job__isnull=True, status=EvaluationRun.Status.SUCCEEDED, source=source,
            ).order_by("-measured_at", "-pk").values("pk")[:1]
        )

    pairs = ModelVersion.objects.filter(pk__in=active_ids).annotate(
        production=latest(Source.PRODUCTION), evaluation_set=latest(Source.EVALUATION_SET)
    ).values_list("production", "evaluation_set")
    latest_ids = [pk for pair in pairs for pk in pair if pk is not None]
    runs_by_id = EvaluationRun.objects.filter(pk__in=latest_ids).select_related("dataset")
    by_version: dict[int, dict[str, EvaluationRun]] = defaultdict(dict)
    for run in runs_by_id:
        by_version[run.version_id][run.source] = run
    return {
        version_id: runs.get(Source.PRODUCTION) or runs[Source.EVALUATION_SET] for version_id, runs in by_version.items()
    }


def _sparklines(deployments: list, since: datetime) -> dict[int, tuple[str, list[tuple[datetime, float]]]]:
    """Accuracy points of the serving versions since `since`, per deployment: production windows of the
    deployment's own evaluation window length if any, else the evaluation set (read only for the deployments
    without production points: two queries at most, from metric_health_idx)."""
    Source = EvaluationRun.Source
    serving = ServingPeriod.objects.filter(version=OuterRef("version_id"), started_at__lte=OuterRef("at")).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=OuterRef("at"))
    )
    points = MetricPoint.objects.filter(name="accuracy", scheduled=True, at__gte=since).filter(Exists(serving))
    # One declared window per line, as on the health chart: a 24-hour window never joins a 7-day one.
    by_window: dict[timedelta, list[int]] = defaultdict(list)
    for d in deployments:
        by_window[timedelta(days=d.evaluation_window_days)].append(d.pk)
    own_window = Q()
    for length, ids in by_window.items():
        own_window |= Q(deployment_id__in=ids, window_length=length)
    chosen: dict[int, tuple[str, list[tuple[datetime, float]]]] = {}
    production = points.filter(own_window, source=Source.PRODUCTION)
    for deployment_id, at, value in production.order_by("at").values_list("deployment_id", "at", "value"):
        chosen.setdefault(deployment_id, ("labelled production", []))[1].append((at, value))
    without = [d.pk for d in deployments if d.pk not in chosen]
    if without:
        evaluation_set = points.filter(deployment_id__in=without, source=Source.EVALUATION_SET)
        for deployment_id, at, value in evaluation_set.order_by("at").values_list("deployment_id", "at", "value"):
            chosen.setdefault(deployment_id, ("evaluation set", []))[1].append((at, value))
    return chosen


def overview_sparklines(*, deployments: list) -> dict[int, tuple[str, list[tuple[datetime, float]]]]:
    """{deployment id: (source, points)} over the last SPARKLINE_DAYS: the page's rows only, as the overview
    draws them (the sort and the totals need every summary, but no sparkline)."""
    return _sparklines(deployments, timezone.now() - timedelta(days=SPARKLINE_DAYS)) if deployments else {}


def deployment_overview(*, user: AbstractBaseUser, sparklines: bool = True) -> list[OverviewRow]:
    """Every deployment the user can see, by name, with what deployment_summary says of each, plus a sparkline
    (left empty with sparklines=False: overview_sparklines draws those of one page)."""
    deployments = list(deployments_visible_to(user=user).annotate(n_candidates=_candidate_counts()).order_by("name"))
    ids = [d.pk for d in deployments]
    severities: dict[int, list[str]] = defaultdict(list)
    for deployment_id, severity in Alert.objects.unresolved().filter(deployment_id__in=ids).values_list("deployment_id", "severity"):
        severities[deployment_id].append(severity)
    active: dict[int, ModelVersion] = {}
    for serving in ModelVersion.objects.filter(deployment_id__in=ids, status=ModelVersion.Status.ACTIVE).order_by("-number"):
        active.setdefault(serving.deployment_id, serving)
    headlines = _headline_runs([v.pk for v in active.values()])
    now = timezone.now()
    counts = prediction_counts_for(deployment_ids=ids, since=now - timedelta(hours=24))
    lines = _sparklines(deployments, now - timedelta(days=SPARKLINE_DAYS)) if sparklines else {}
    rows = []
    for deployment in deployments:
        version = active.get(deployment.pk)
        latest = headlines.get(version.pk) if version else None
        predictions_24h, last = counts[deployment.pk]
        source, points = lines.get(deployment.pk, ("", []))
        summary = DeploymentSummary(
            deployment=deployment,
            health=health_of(open_severities=severities[deployment.pk], has_headline=latest is not None),
            active_version=version,
            open_alerts=len(severities[deployment.pk]),
            candidates=deployment.n_candidates,
            latest_metrics=latest.metrics if latest else {},
            latest_rows=describe_rows(latest) if latest else "",
            predictions_24h=predictions_24h,
            last_prediction_at=last,
        )
        rows.append(OverviewRow(summary=summary, sparkline=points, sparkline_source=source))
    return rows
