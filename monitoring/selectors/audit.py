"""A deployment's audit log: filtered reads, and the objects it names in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from monitoring.models import Alert, ApiToken, AuditEvent, Dataset, Deployment, MaintenanceJob, ModelVersion

# The kinds the log can be filtered by: the part of an action before its dot ("version.approve" is a version's).
AUDIT_KINDS: dict[str, str] = {
    "version": "Versions",
    "deployment": "Deployment settings and rollbacks",
    "job": "Maintenance jobs",
    "dataset": "Datasets",
    "token": "Ingestion tokens",
    "alert": "Alerts",
}


def audit_events(
    *, deployment: Deployment, kind: str = "", action: str | None = None, actor: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Newest first. `kind` is a key of AUDIT_KINDS, `action` any prefix of an action ("version." or
    "version.approve"), `actor` an actor label ("alice", "worker"); `until` is exclusive."""
    events = deployment.audit_events.all()
    if kind:
        events = events.filter(action__startswith=f"{kind}.")
    if action:
        events = events.filter(action__startswith=action)
    if actor:
        events = events.filter(actor_label=actor)
    if since is not None:
        events = events.filter(at__gte=since)
    if until is not None:
        events = events.filter(at__lt=until)
    return events.order_by("-at", "-id")


def audit_actors(*, deployment: Deployment) -> list[str]:
    """Everyone (and everything: "worker", "token:…") that appears in the log, for the actor filter."""
    return sorted(set(deployment.audit_events.values_list("actor_label", flat=True)))


@dataclass(frozen=True)
class NamedObject:
    """What an audit entry is about, in words: "v3 of Digits MLP", "job #12 (Compress: float16 weights)"."""

    label: str
    kind: str  # "version", "job", "alert", "dataset", "token", "deployment", or "" for anything else
    number: int | None = None  # the version number (its page's URL), or the alert's / job's id


def audit_object_names(events: list[AuditEvent]) -> dict[tuple[str, str], NamedObject]:
    """Names for the objects of `events`, keyed by (object_type, object_id); one query per object type."""
    ids: dict[str, set[int]] = {}
    for event in events:
        if event.object_id.isdigit():
            ids.setdefault(event.object_type, set()).add(int(event.object_id))
    names: dict[tuple[str, str], NamedObject] = {}
    for version in ModelVersion.objects.filter(pk__in=ids.get("ModelVersion", ())).select_related("deployment"):
        names["ModelVersion", str(version.pk)] = NamedObject(
            f"v{version.number} of {version.deployment.name}", "version", version.number
        )
    for job in MaintenanceJob.objects.filter(pk__in=ids.get("MaintenanceJob", ())).select_related("source_version"):
        names["MaintenanceJob", str(job.pk)] = NamedObject(
            f"job #{job.pk}: {job.get_kind_display()} of v{job.source_version.number}", "job", job.pk
        )
    for alert in Alert.objects.filter(pk__in=ids.get("Alert", ())):
        names["Alert", str(alert.pk)] = NamedObject(f"alert: {alert.title}", "alert", alert.pk)
    for dataset in Dataset.objects.filter(pk__in=ids.get("Dataset", ())):
        names["Dataset", str(dataset.pk)] = NamedObject(
            f"{dataset.kind} dataset {dataset.name}", "dataset", dataset.pk
        )
    for token in ApiToken.objects.filter(pk__in=ids.get("ApiToken", ())):
        names["ApiToken", str(token.pk)] = NamedObject(f"token {token}", "token", token.pk)
    for deployment in Deployment.objects.filter(pk__in=ids.get("Deployment", ())):
        names["Deployment", str(deployment.pk)] = NamedObject(deployment.name, "deployment", deployment.pk)
    return names
