"""One version's page: where it came from, what was decided about it and why, and how it did while it served."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from monitoring.maintenance.wording import job_settings
from monitoring.models import AuditEvent, MaintenanceJob, MetricPoint, ModelVersion


@dataclass(frozen=True)
class VersionEvent:
    """One step in a version's life, as the audit log recorded it."""

    at: datetime
    what: str  # "Registered", "Approved", "Rejected", "Retired", "Rolled back to", "Tagged"
    actor: str
    comment: str


@dataclass(frozen=True)
class Lineage:
    version: ModelVersion
    parent: ModelVersion | None
    children: list[ModelVersion]
    job: MaintenanceJob | None  # the maintenance job that made it, if one did
    job_settings: list[tuple[str, str]]  # that job's own settings, labelled; [] for a kind without any


def version_lineage(*, version: ModelVersion) -> Lineage:
    job = (
        MaintenanceJob.objects.select_related("requested_by", "source_version").filter(candidate=version).first()
        or (version.created_by_job if version.created_by_job_id else None)
    )
    return Lineage(
        version=version,
        parent=version.parent,
        children=list(version.children.order_by("number")),
        job=job,
        job_settings=job_settings(job.kind, job.params or {}) if job is not None else [],
    )


def _event_words(event: AuditEvent, number: int) -> str:
    if event.action == "version.register":
        return "Registered"
    if event.action == "version.approve":
        if event.after and event.after.get("version") == number:
            return "Approved"
        return f"Retired: replaced by v{(event.after or {}).get('active_version')}"
    if event.action == "version.reject":
        return "Rejected"
    if event.action == "deployment.rollback":
        before, after = event.before or {}, event.after or {}
        if after.get("active_version") == number:
            return f"Restored by a rollback from v{before.get('active_version')}"
        return f"Retired: rolled back to v{after.get('active_version')}"
    if event.action == "version.tag":
        return "Tagged " + ", ".join(sorted(set((event.after or {}).get("tags", [])) - set((event.before or {}).get("tags", []))))
    if event.action == "version.untag":
        return "Untagged " + ", ".join(sorted(set((event.before or {}).get("tags", [])) - set((event.after or {}).get("tags", []))))
    return event.action


def version_history(*, version: ModelVersion) -> list[VersionEvent]:
    """Who registered, approved, rejected, retired, restored and tagged it, and why; oldest first.

    Its own audit events, plus the ones of other versions that took it out of production or put it back (an
    approval of its successor, a rollback from or to it)."""
    number = version.number
    events = AuditEvent.objects.filter(deployment_id=version.deployment_id).filter(
        Q(object_type="ModelVersion", object_id=str(version.pk))
        | Q(action="version.approve", before__active_version=number)
        | Q(action="deployment.rollback", before__active_version=number)
        | Q(action="deployment.rollback", after__active_version=number)
    )
    history = [
        VersionEvent(event.at, _event_words(event, number), event.actor_label, event.comment)
        for event in events.order_by("at", "id")
    ]
    return history


def version_serving_periods(*, version: ModelVersion) -> list[tuple[datetime, datetime | None]]:
    """(started, ended or None while serving), oldest first."""
    return list(version.serving_periods.order_by("started_at").values_list("started_at", "ended_at"))


def version_metric_series(
    *, version: ModelVersion, names: list[str], source: str, window_days: int | None = None
) -> dict[str, dict[str, list]]:
    """The scheduled evaluation's points of this version while it served, as the health chart draws them
    ({"accuracy": {"at": [...], "value": [...], "version": [...]}}); like selectors.serving_metric_series, a
    maintenance job's runs and windows of another length are left out."""
    periods = version_serving_periods(version=version)
    series: dict[str, dict[str, list]] = {name: {"at": [], "value": [], "version": []} for name in names}
    if not periods:
        return series
    served = Q()
    for started, ended in periods:
        served |= Q(at__gte=started) & (Q(at__lt=ended) if ended is not None else Q())
    points = MetricPoint.objects.filter(version=version, name__in=names, source=source, scheduled=True).filter(served)
    if window_days is not None:
        points = points.filter(window_length=timedelta(days=window_days))
    for name, at, value in points.order_by("at").values_list("name", "at", "value"):
        series[name]["at"].append(at)
        series[name]["value"].append(value)
        series[name]["version"].append(version.number)
    return series
