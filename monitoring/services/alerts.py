"""Alerts: raised once per dedup key while unresolved, resolved when the condition clears, acknowledged."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring.models import (
    Alert,
    Deployment,
    DriftReport,
    EvaluationRun,
)
from monitoring.services.audit import audit_record
from monitoring.services.errors import ValidationFailed
from monitoring.services.notifications import alert_route


def alert_raise(
    *,
    deployment: Deployment,
    kind: str,
    dedup_key: str,
    title: str,
    message: str = "",
    severity: str = Alert.Severity.WARNING,
    drift_report: DriftReport | None = None,
    evaluation_run: EvaluationRun | None = None,
    figures: dict[str, object] | None = None,
) -> tuple[Alert, bool]:
    """Open an alert, or refresh the unresolved one with the same key. Returns (alert, created)."""
    now = timezone.now()
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update().unresolved().filter(deployment=deployment, dedup_key=dedup_key).first()
        )
        if alert is not None:
            changed = (alert.title, alert.severity) != (title, severity)
            alert.occurrences += 1
            alert.last_seen_at = now
            alert.title, alert.message, alert.severity = title, message, severity
            alert.figures = figures or alert.figures
            alert.drift_report = drift_report or alert.drift_report
            alert.evaluation_run = evaluation_run or alert.evaluation_run
            alert.save()
            if changed:  # a repeat of the same finding is not news; a new title or severity is
                alert_route(alert=alert, now=now)
            return alert, False
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    deployment=deployment,
                    kind=kind,
                    severity=severity,
                    dedup_key=dedup_key,
                    title=title,
                    message=message,
                    drift_report=drift_report,
                    evaluation_run=evaluation_run,
                    figures=figures or {},
                    created_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:  # another worker opened it a moment ago
            alert = Alert.objects.unresolved().get(deployment=deployment, dedup_key=dedup_key)
            return alert, False
        audit_record(
            action="alert.open", actor=None, actor_label="worker", deployment=deployment, obj=alert, after={"title": title}
        )
        alert_route(alert=alert, now=now)
    return alert, True


@transaction.atomic
def alert_resolve_key(*, deployment: Deployment, dedup_key: str) -> int:
    """Resolve the unresolved alert with this key when its condition has cleared."""
    now = timezone.now()
    alerts = list(Alert.objects.select_for_update().unresolved().filter(deployment=deployment, dedup_key=dedup_key))
    for alert in alerts:
        alert.status, alert.resolved_at = Alert.Status.RESOLVED, now
        alert.save(update_fields=["status", "resolved_at"])
        alert_route(alert=alert, now=now)
    return len(alerts)


@transaction.atomic
def alert_set_status(*, alert: Alert, status: str, by: AbstractBaseUser) -> Alert:
    if status not in (Alert.Status.ACKNOWLEDGED, Alert.Status.RESOLVED):
        raise ValidationFailed("An alert can be acknowledged or resolved.")
    before = {"status": alert.status}
    alert.status = status
    if status == Alert.Status.RESOLVED:
        alert.resolved_at = timezone.now()
    alert.save()
    if status == Alert.Status.RESOLVED:
        alert_route(alert=alert, now=alert.resolved_at or timezone.now())
    audit_record(action=f"alert.{status}", actor=by, deployment=alert.deployment, obj=alert, before=before, after={"status": status})
    return alert
