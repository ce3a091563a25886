"""A deployment's page: its health summary, metric series, versions and alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from monitoring.models import (
    Alert,
    Deployment,
    EvaluationRun,
    MetricPoint,
    ModelVersion,
)
from monitoring.selectors.access import deployments_visible_to
from monitoring.selectors.traffic import prediction_counts


class Health:
    OK = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "no data"


@dataclass(frozen=True)
class DeploymentSummary:
    deployment: Deployment
    health: str
    active_version: ModelVersion | None
    open_alerts: int
    candidates: int
    latest_metrics: dict
    # Which rows the headline figures come from: "labelled production, 7 days · 1,204 rows".
    latest_rows: str
    predictions_24h: int
    last_prediction_at: datetime | None


def headline_run(*, version: ModelVersion) -> EvaluationRun | None:
    """The run a deployment's headline figures come from: its serving version's latest scheduled run on the
    labelled production window (what its floors and alerts go by), else on the evaluation set."""
    runs = EvaluationRun.objects.filter(version=version, job__isnull=True).select_related("dataset")
    return (
        runs.filter(source=EvaluationRun.Source.PRODUCTION).latest_succeeded()
        or runs.filter(source=EvaluationRun.Source.EVALUATION_SET).latest_succeeded()
    )


def describe_rows(run: EvaluationRun) -> str:
    """Which rows an evaluation scored, in words a reader can check against the chart."""
    if run.source == EvaluationRun.Source.EVALUATION_SET:
        where = f"evaluation set ({run.dataset.name})" if run.dataset_id and run.dataset else "evaluation set"
    elif run.window_start and run.window_end:
        span = run.window_end - run.window_start
        length = f"{span.days} days" if span.days > 1 else "24 h" if span == timedelta(days=1) else str(span)
        where = f"labelled production, {length}"
    else:
        where = run.get_source_display().lower()
    return f"{where} · {run.n_rows:,} rows"


def health_of(*, open_severities: list[str], has_headline: bool) -> str:
    if Alert.Severity.CRITICAL in open_severities:
        return Health.CRITICAL
    if open_severities:
        return Health.WARNING
    return Health.OK if has_headline else Health.UNKNOWN


def deployment_summary(*, deployment: Deployment, versions: list[ModelVersion] | None = None) -> DeploymentSummary:
    """`versions`: all of the deployment's versions when the caller has them (its page lists them), so the active
    version and the candidates are not read again."""
    open_alerts = list(
        deployment.alerts.unresolved().values_list("severity", flat=True)
    )
    if versions is None:
        active = deployment.active_version()
        candidates = deployment.versions.filter(status=ModelVersion.Status.CANDIDATE).count()
    else:
        active = next((v for v in versions if v.status == ModelVersion.Status.ACTIVE), None)
        candidates = sum(v.status == ModelVersion.Status.CANDIDATE for v in versions)
    latest = headline_run(version=active) if active else None
    health = health_of(open_severities=open_alerts, has_headline=latest is not None)
    since = timezone.now() - timedelta(hours=24)
    predictions_24h, last = prediction_counts(deployment=deployment, since=since)
    return DeploymentSummary(
        deployment=deployment,
        health=health,
        active_version=active,
        open_alerts=len(open_alerts),
        candidates=candidates,
        latest_metrics=latest.metrics if latest else {},
        latest_rows=describe_rows(latest) if latest else "",
        predictions_24h=predictions_24h,
        last_prediction_at=last,
    )


def per_class_rows(*, metrics: dict) -> list[dict]:
    """The per-class table of one evaluation's metrics: [{"label", "precision", "recall", "f1", "support"}]."""
    per_class, labels = metrics.get("per_class") or {}, metrics.get("labels") or []
    if not per_class or len(per_class.get("f1", [])) != len(labels):
        return []
    return [
        {"label": label, **{name: per_class[name][i] for name in ("precision", "recall", "f1", "support")}}
        for i, label in enumerate(labels)
    ]


def serving_metric_series(
    *,
    deployment: Deployment,
    names: list[str],
    source: str,
    since: datetime | None = None,
    until: datetime | None = None,
    window_days: int | None = None,
    buckets: int | None = None,
    periods: list[ServingSpan] | None = None,
) -> dict[str, dict[str, list]]:
    """What served, as the health chart draws it: {"accuracy": {"at": [...], "value": [...], "version": [...]}},
    oldest first.

    Only points a version scored while it was serving (its ServingPeriods), only from the scheduled evaluation
    (a maintenance job's runs compare candidates and belong on their compare page), and, for a production source,
    only windows exactly `window_days` long, so a 24-hour window and a 7-day one never share a line.

    With `buckets` (and both ends of the range), [since, until] is cut into that many equal spans and each series
    keeps, per span, only its lowest and its highest point: at most 2 × buckets points whatever the range, the
    extremes (a dip below a floor) kept. Done in Postgres, so a year of hourly points never reaches Python.

    `periods`: serving_periods(deployment, since, until) when the caller has read them already (a page drawing
    several series reads them once: each small query costs 3-10 ms on a loaded machine, bench/pages.py).
    """
    series: dict[str, dict[str, list]] = {name: {"at": [], "value": [], "version": []} for name in names}
    # A deployment has a handful of serving periods: spelt out as ranges, they are checked on each index entry
    # (a join to the periods cost more than reading the points; bench/pages.py).
    served, numbers = Q(), {}
    if periods is None:
        periods = serving_periods(deployment=deployment, since=since, until=until)
    for period in periods:
        served |= Q(version_id=period.version_id, at__gte=period.started,
                    **({} if period.ended is None else {"at__lt": period.ended}))
        numbers[period.version_id] = period.number
    if not numbers:
        return series
    # metric_health_idx answers this from the index alone.
    points = MetricPoint.objects.filter(served, deployment=deployment, source=source, name__in=names, scheduled=True)
    if since is not None:
        points = points.filter(at__gte=since)
    if until is not None:
        points = points.filter(at__lte=until)
    if window_days is not None:
        points = points.filter(window_length=timedelta(days=window_days))
    if buckets and since is not None and until is not None and connection.vendor == "postgresql":
        columns = points.order_by().values_list("name", "at", "value", "version_id")
        rows = _lowest_and_highest(columns, since=since, until=until, buckets=buckets)
    else:
        rows = list(points.order_by("at").values_list("name", "at", "value", "version_id"))
    for name, at, value, version_id in rows:
        series[name]["at"].append(at)
        series[name]["value"].append(value)
        series[name]["version"].append(numbers[version_id])
    return series


def _lowest_and_highest(points: QuerySet, *, since: datetime, until: datetime, buckets: int) -> list[tuple]:
    """The rows of `points` (name, at, value, version_id) that are the lowest or the highest of their name in
    their time bucket, oldest first (ties: the earlier lowest, the later highest)."""
    sql, params = points.query.sql_with_params()
    # One sort serves both ends: in (value, at) order the lowest is the bucket's first row and the highest its last.
    # Cheap sort keys: date_part is a float (extract's numeric was slow arithmetic), and names compare bytewise.
    ranked = f"""
        SELECT name, at, value, version_id, row_number() OVER bucket AS rank, count(*) OVER bucket AS size
        FROM (SELECT s.*, width_bucket(date_part('epoch', s.at), %s, %s, %s) AS bucket FROM ({sql}) s) bucketed
        WINDOW bucket AS (PARTITION BY name COLLATE "C", bucket ORDER BY value, at
                          ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    """
    kept = f"SELECT name, at, value, version_id FROM ({ranked}) r WHERE rank = 1 OR rank = size ORDER BY at"
    with connection.cursor() as cursor:
        cursor.execute(kept, [since.timestamp(), until.timestamp() + 1e-6, buckets, *params])
        return cursor.fetchall()


@dataclass(frozen=True)
class ServingSpan:
    version_id: int
    number: int
    started: datetime
    ended: datetime | None  # None while serving


def serving_periods(
    *, deployment: Deployment, since: datetime | None = None, until: datetime | None = None
) -> list[ServingSpan]:
    """Who served when, oldest first; those still serving at `since` too, and none that started after `until`."""
    periods = deployment.serving_periods.all()
    if since is not None:
        periods = periods.filter(Q(ended_at__isnull=True) | Q(ended_at__gt=since))
    if until is not None:
        periods = periods.filter(started_at__lte=until)
    rows = periods.order_by("started_at").values_list("version_id", "version__number", "started_at", "ended_at")
    return [ServingSpan(*row) for row in rows]


@dataclass(frozen=True)
class VersionRow:
    version: ModelVersion
    evaluation_set: dict
    production: dict


def versions_list(*, deployment: Deployment) -> list[ModelVersion]:
    """The deployment's versions, newest first, with who made and decided them and their parent."""
    return list(_versions(deployment))


def _versions(deployment: Deployment) -> QuerySet[ModelVersion]:
    return deployment.versions.select_related("created_by", "decided_by", "retired_by", "parent").order_by("-number")


def versions_with_metrics(*, deployment: Deployment) -> list[VersionRow]:
    """Each version with its latest metrics on the evaluation set and on production traffic, newest first.

    Two queries whatever the history: the versions with the latest run id per source as subqueries
    (evaluation_latest_idx answers each with one index probe), then those runs' metrics. Reading every run to keep
    the last was 17,520 JSON documents for a year of hourly evaluations (bench/pages.py).
    """
    Source = EvaluationRun.Source

    def latest(source: str) -> Subquery:
        return Subquery(
            EvaluationRun.objects.filter(version_id=OuterRef("pk"), source=source, status=EvaluationRun.Status.SUCCEEDED)
            .order_by("-measured_at", "-pk").values("pk")[:1]
        )

    versions = list(
        _versions(deployment).annotate(latest_evaluation_set=latest(Source.EVALUATION_SET), latest_production=latest(Source.PRODUCTION))
    )
    wanted = {
        run_id: (v.pk, source) for v in versions
        for source, run_id in ((Source.EVALUATION_SET, v.latest_evaluation_set), (Source.PRODUCTION, v.latest_production))
        if run_id is not None
    }
    latest_metrics = {
        wanted[pk]: metrics for pk, metrics in EvaluationRun.objects.filter(pk__in=wanted).values_list("pk", "metrics")
    }
    return [
        VersionRow(
            version=v,
            evaluation_set=latest_metrics.get((v.pk, Source.EVALUATION_SET), {}),
            production=latest_metrics.get((v.pk, Source.PRODUCTION), {}),
        )
        for v in versions
    ]


def alerts_for(*, deployment: Deployment | None = None, user: AbstractBaseUser | None = None, unresolved_only: bool = False):
    alerts = Alert.objects.select_related("deployment").order_by("-last_seen_at")
    if deployment is not None:
        alerts = alerts.filter(deployment=deployment)
    if user is not None:
        alerts = alerts.filter(deployment__in=deployments_visible_to(user=user))
    if unresolved_only:
        alerts = alerts.unresolved()
    return alerts
