"""Read endpoints: a deployment's evaluation runs and metric series, drift reports and per-feature series, alerts
and audit log. Any member of the deployment's team reads them (bearer token or session). Each list is paged
(dashboard/api/pagination.py) and has a CSV twin at the same path plus `.csv`, with the same filters, streamed
row by row so an export of the whole history holds one chunk of rows in memory at a time.
"""


import csv
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Literal

import orjson
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate

from dashboard.access import VIEW, get_deployment_for
from dashboard.api.auth import management_auth, user_of
from dashboard.api.errors import error_responses
from dashboard.api.pagination import Pages
from dashboard.api.schemas import AlertOut
from monitoring import selectors
from monitoring.models import Alert, AuditEvent, Deployment, DriftFeaturePoint, DriftReport, EvaluationRun, MetricPoint

router = Router(auth=management_auth)

READ_ERRORS = error_responses(401, 404, 422)
CSV_DOC = {"responses": {200: {"description": "CSV with a header row", "content": {"text/csv": {}}}}}
# Rows fetched per database round trip while streaming a CSV: big enough that the trips do not dominate.
CSV_CHUNK = 2000


class _Echo:
    """csv.writer writes into this and gets the line back (Django's streaming-CSV recipe)."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else value


def csv_response(rows: QuerySet, columns: dict[str, Callable[[Any], Any]], filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(list(columns))
        for row in rows.iterator(chunk_size=CSV_CHUNK):
            yield writer.writerow([_cell(get(row)) for get in columns.values()])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _deployment(request: HttpRequest, slug: str) -> Deployment:
    return get_deployment_for(user_of(request), slug, need=VIEW)


def _twin(path: str, summary: str, tags: list[str], out: type, columns: dict[str, Callable[[Any], Any]],
          filters: type[Schema], select: Callable[[Deployment, Any], QuerySet]) -> None:
    """Register `path` (a page of `out`) and `path.csv` (every matching row), both filtered by `filters`."""
    name = path.rsplit("/", 1)[-1].replace("-", "_")

    def page(request: HttpRequest, slug: str, params: Query[filters]) -> QuerySet:  # type: ignore[valid-type]
        return select(_deployment(request, slug), params)

    def export(request: HttpRequest, slug: str, params: Query[filters]) -> StreamingHttpResponse:  # type: ignore[valid-type]
        return csv_response(select(_deployment(request, slug), params), columns, f"{slug}-{name}.csv")

    page.__name__, export.__name__ = f"{name}_list", f"{name}_csv"
    page.__doc__ = export.__doc__ = select.__doc__
    listed = list[out]  # type: ignore[valid-type]
    router.get(path, response={200: listed, **READ_ERRORS}, tags=tags, summary=summary)(paginate(Pages)(page))
    router.get(f"{path}.csv", response={**READ_ERRORS}, tags=tags, summary=f"{summary}, as CSV",
               openapi_extra=CSV_DOC)(export)


class _Window(Schema):
    since: datetime | None = Field(None, description="From this time (ISO 8601), inclusive")
    until: datetime | None = Field(None, description="Until this time, exclusive")


# ---------------------------------------------------------------- evaluation runs and metric series


class EvaluationFilters(_Window):
    version: int | None = Field(None, description="A version's number")
    source: Literal["evaluation_set", "production", "production_day"] | None = None
    status: Literal["queued", "running", "succeeded", "failed"] | None = None


class EvaluationRunOut(Schema):
    id: int
    version: int
    source: str
    status: str
    dataset: int | None = Field(description="Id of the dataset it scored, for an evaluation-set run")
    window_start: datetime | None
    window_end: datetime | None
    n_rows: int
    metrics: dict[str, Any]
    error: str
    measured_at: datetime
    finished_at: datetime | None

    @staticmethod
    def resolve_version(obj: EvaluationRun) -> int:
        return obj.version.number

    @staticmethod
    def resolve_dataset(obj: EvaluationRun) -> int | None:
        return obj.dataset_id


def _evaluations(deployment: Deployment, f: EvaluationFilters) -> QuerySet[EvaluationRun]:
    """Newest first. Every run: scheduled ones on the evaluation set and on labelled production windows, and
    the runs of maintenance jobs."""
    return selectors.evaluation_runs(deployment=deployment, version=f.version, source=f.source, status=f.status,
                                     since=f.since, until=f.until)


_twin("/deployments/{slug}/evaluations", "List evaluation runs", ["evaluations"], EvaluationRunOut, {
    "id": lambda r: r.pk, "version": lambda r: r.version.number, "source": lambda r: r.source,
    "status": lambda r: r.status, "dataset": lambda r: r.dataset_id, "window_start": lambda r: r.window_start,
    "window_end": lambda r: r.window_end, "n_rows": lambda r: r.n_rows, "metrics": lambda r: r.metrics,
    "error": lambda r: r.error, "measured_at": lambda r: r.measured_at, "finished_at": lambda r: r.finished_at,
}, EvaluationFilters, _evaluations)


class MetricFilters(_Window):
    name: str | None = Field(None, description="One metric, e.g. accuracy, f1_macro")
    source: Literal["evaluation_set", "production", "production_day"] | None = None
    version: int | None = None


class MetricPointOut(Schema):
    at: datetime
    name: str
    value: float
    version: int
    source: str
    run: int

    @staticmethod
    def resolve_version(obj: MetricPoint) -> int:
        return obj.version.number

    @staticmethod
    def resolve_run(obj: MetricPoint) -> int:
        return obj.run_id


def _metrics(deployment: Deployment, f: MetricFilters) -> QuerySet[MetricPoint]:
    """One row per metric per run, oldest first: the series the health chart draws."""
    return selectors.metric_points(deployment=deployment, name=f.name, source=f.source, version=f.version,
                                   since=f.since, until=f.until)


_twin("/deployments/{slug}/metrics", "Metric series", ["evaluations"], MetricPointOut, {
    "at": lambda p: p.at, "name": lambda p: p.name, "value": lambda p: p.value,
    "version": lambda p: p.version.number, "source": lambda p: p.source, "run": lambda p: p.run_id,
}, MetricFilters, _metrics)


# ---------------------------------------------------------------- drift


class DriftFilters(_Window):
    drifted: bool | None = Field(None, description="Only reports that found drift (true) or did not (false)")


class DriftReportOut(Schema):
    id: int
    window_start: datetime
    window_end: datetime
    n_reference: int
    n_current: int
    drifted: bool
    n_drifted: int
    share_drifted: float
    correction: str
    features: list[dict[str, Any]] = Field(description="Per feature: test, statistic, p_value, threshold, verdict")
    prediction_drift: dict[str, Any]
    multivariate: dict[str, Any]
    performance: dict[str, Any]
    created_at: datetime


def _drift_reports(deployment: Deployment, f: DriftFilters) -> QuerySet[DriftReport]:
    """Newest window first."""
    return selectors.drift_reports(deployment=deployment, drifted=f.drifted, since=f.since, until=f.until)


_twin("/deployments/{slug}/drift-reports", "List drift reports", ["drift"], DriftReportOut, {
    "id": lambda r: r.pk, "window_start": lambda r: r.window_start, "window_end": lambda r: r.window_end,
    "n_reference": lambda r: r.n_reference, "n_current": lambda r: r.n_current, "drifted": lambda r: r.drifted,
    "n_drifted": lambda r: r.n_drifted, "share_drifted": lambda r: r.share_drifted,
    "correction": lambda r: r.correction, "drifted_features": lambda r: [
        f.get("feature") for f in r.features if f.get("drifted")],
    "prediction_drift": lambda r: r.prediction_drift, "created_at": lambda r: r.created_at,
}, DriftFilters, _drift_reports)


class FeatureFilters(DriftFilters):
    feature: str | None = Field(None, description="One feature's name")


class DriftFeaturePointOut(Schema):
    at: datetime = Field(description="The end of the report's window")
    feature: str
    test: str
    statistic: float
    p_value: float | None
    threshold: float
    moved: float
    drifted: bool
    report: int

    @staticmethod
    def resolve_report(obj: DriftFeaturePoint) -> int:
        return obj.report_id


def _drift_features(deployment: Deployment, f: FeatureFilters) -> QuerySet[DriftFeaturePoint]:
    """One row per feature per drift report, oldest first: each feature's drift statistic over time."""
    return selectors.drift_feature_points(deployment=deployment, feature=f.feature, drifted=f.drifted,
                                          since=f.since, until=f.until)


_twin("/deployments/{slug}/drift-features", "Per-feature drift series", ["drift"], DriftFeaturePointOut, {
    "at": lambda p: p.at, "feature": lambda p: p.feature, "test": lambda p: p.test,
    "statistic": lambda p: p.statistic, "p_value": lambda p: p.p_value, "threshold": lambda p: p.threshold,
    "moved": lambda p: p.moved, "drifted": lambda p: p.drifted, "report": lambda p: p.report_id,
}, FeatureFilters, _drift_features)


# ---------------------------------------------------------------- alerts (the page is in jobs.py) and audit


class AlertFilters(_Window):
    unresolved: bool = Field(False, description="Only open and acknowledged alerts")
    status: Literal["open", "acknowledged", "resolved"] | None = None
    kind: str | None = None
    severity: Literal["info", "warning", "critical"] | None = None

    def apply(self, deployment: Deployment) -> QuerySet[Alert]:
        return selectors.alerts_filtered(deployment=deployment, unresolved=self.unresolved, status=self.status,
                                         kind=self.kind, severity=self.severity, since=self.since, until=self.until)


def _alerts_csv(request: HttpRequest, slug: str, filters: Query[AlertFilters]) -> StreamingHttpResponse:
    """Most recently seen first, with the same filters as the list."""
    return csv_response(filters.apply(_deployment(request, slug)), {
        "id": lambda a: a.pk, "kind": lambda a: a.kind, "severity": lambda a: a.severity,
        "status": lambda a: a.status, "title": lambda a: a.title, "message": lambda a: a.message,
        "occurrences": lambda a: a.occurrences, "created_at": lambda a: a.created_at,
        "last_seen_at": lambda a: a.last_seen_at, "resolved_at": lambda a: a.resolved_at,
        "figures": lambda a: a.figures,
    }, f"{slug}-alerts.csv")


router.get("/deployments/{slug}/alerts.csv", response={**READ_ERRORS}, tags=["alerts"],
           summary="List alerts, as CSV", openapi_extra=CSV_DOC)(_alerts_csv)
_ = AlertOut  # the list's schema, in jobs.py


class AuditFilters(_Window):
    action: str | None = Field(None, description='An action or its prefix: "version." for every version decision')
    actor: str | None = Field(None, description='Who: a username, "worker", or a service token "wks_<prefix>"')


class AuditEventOut(Schema):
    id: int
    at: datetime
    actor: str = Field(description='A username, "worker", "system", or a service token "wks_<prefix>"')
    action: str
    object_type: str
    object_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    comment: str

    @staticmethod
    def resolve_actor(obj: AuditEvent) -> str:
        return obj.actor_label


def _audit(deployment: Deployment, f: AuditFilters) -> QuerySet[AuditEvent]:
    """Newest first: who did what to this deployment, with the state before and after."""
    return selectors.audit_events(deployment=deployment, action=f.action, actor=f.actor, since=f.since, until=f.until)


_twin("/deployments/{slug}/audit", "The audit log", ["audit"], AuditEventOut, {
    "id": lambda e: e.pk, "at": lambda e: e.at, "actor": lambda e: e.actor_label, "action": lambda e: e.action,
    "object_type": lambda e: e.object_type, "object_id": lambda e: e.object_id, "before": lambda e: e.before,
    "after": lambda e: e.after, "comment": lambda e: e.comment,
}, AuditFilters, _audit)


