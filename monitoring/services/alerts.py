"""Alerts: raised once per dedup key while unresolved, resolved when the condition clears, acknowledged."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring import alert_keys
from monitoring.models import (
    Alert,
    Deployment,
    DriftReport,
    EvaluationRun,
    MaintenanceJob,
    Membership,
    ModelVersion,
    Role,
    ScheduledCheckState,
)
from monitoring.services.audit import audit_record
from monitoring.services.errors import ValidationFailed
from monitoring.services.notifications import alert_route, notification_direct


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


# ---------------------------------------------------------------- alert kinds raised by the services themselves

CHECK_LABELS = {"evaluation": "scheduled evaluation", "drift": "scheduled drift check"}


def scheduled_check_record(*, deployment: Deployment, check: str, error: str | None, now: datetime | None = None) -> int:
    """Count a scheduled check's outcome: at settings.ALERT_CHECK_FAILURES failures in a row its check_failing
    alert opens (refreshed by later failures), and the next success resolves it. Returns the failures in a row."""
    now = now or timezone.now()
    key = alert_keys.check_failing_key(check=check)
    with transaction.atomic():
        state, _ = ScheduledCheckState.objects.select_for_update().get_or_create(deployment=deployment, check_name=check)
        if error is None:
            state.consecutive_failures, state.first_failed_at, state.last_succeeded_at = 0, None, now
            state.save()
            alert_resolve_key(deployment=deployment, dedup_key=key)
            return 0
        state.consecutive_failures += 1
        state.first_failed_at = state.first_failed_at or now
        state.last_failed_at, state.last_error = now, error[:1000]
        state.save()
        if state.consecutive_failures >= settings.ALERT_CHECK_FAILURES:
            last_ok = f"{state.last_succeeded_at:%Y-%m-%d %H:%M} UTC" if state.last_succeeded_at else "never"
            alert_raise(
                deployment=deployment, kind=Alert.Kind.CHECK_FAILING, dedup_key=key,
                # The count is in the figures, not the title: a new title would be news to send each time.
                title=f"The {CHECK_LABELS.get(check, check)} keeps failing",
                message=f"It failed {state.consecutive_failures} times in a row (last success: {last_ok}). "
                f"Last error: {error}",
                figures={"check": check, "consecutive_failures": state.consecutive_failures,
                         "first_failed_at": state.first_failed_at.isoformat(), "last_error": error[:1000],
                         "last_succeeded_at": state.last_succeeded_at.isoformat() if state.last_succeeded_at else None},
            )
        return state.consecutive_failures


def _approver_addresses(deployment: Deployment) -> list[str]:
    return sorted({
        m.user.email for m in Membership.objects.filter(team_id=deployment.team_id, role=Role.APPROVER, user__is_active=True)
        .select_related("user") if m.user.email
    })


def candidate_waiting_raise(*, version: ModelVersion) -> Alert | None:
    """A candidate waits for review: an info alert, routed as usual and emailed to the team's approvers; it
    resolves when the candidate is approved or rejected. Raised once per version (a second call refreshes)."""
    if version.status != ModelVersion.Status.CANDIDATE:
        return None
    deployment = version.deployment
    origin = f"made by a {version.origin} job" if version.created_by_job_id else "uploaded"
    alert, created = alert_raise(
        deployment=deployment, kind=Alert.Kind.CANDIDATE_WAITING,
        dedup_key=alert_keys.candidate_waiting_key(version_id=version.pk), severity=Alert.Severity.INFO,
        title=f"v{version.number} is waiting for review",
        message=f"v{version.number} ({origin}) waits for an approver to compare it with the active version and "
        "approve or reject it.",
        figures={"version": version.number, "origin": version.origin, "size_bytes": version.size_bytes,
                 "parent": version.parent.number if version.parent else None},
    )
    if created:
        addresses = _approver_addresses(deployment)
        if addresses:
            notification_direct(alert=alert, recipients=addresses,
                                headline=f"{deployment.name}: v{version.number} is waiting for your review")
    return alert


def candidate_decided(*, version: ModelVersion) -> None:
    """The candidate was approved or rejected: nothing waits any more."""
    alert_resolve_key(deployment=version.deployment, dedup_key=alert_keys.candidate_waiting_key(version_id=version.pk))


def job_outcome_notify(*, job: MaintenanceJob, alert: Alert | None) -> None:
    """Tell whoever queued the job that it finished (its candidate's alert) or failed (the job_failed alert)."""
    requester = job.requested_by
    if alert is None or requester is None or not requester.email:
        return
    if job.status == MaintenanceJob.Status.SUCCEEDED:
        headline = f"{job.deployment.name}: your {job.get_kind_display()} job finished; {alert.title}"
    else:
        headline = f"{job.deployment.name}: your {job.get_kind_display()} job failed"
    notification_direct(alert=alert, recipients=[requester.email], headline=headline)
