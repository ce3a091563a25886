"""The outbox: alerts grouped per deployment and routing rule, flushed into notifications, and their delivery state.

Alertmanager's model, per routing rule:
- an alert that matches opens a group (or joins the deployment's open one); the group first sends `group_wait`
  after it opened, listing every alert that joined meanwhile;
- a later change (an alert joins, resolves, changes severity or title) is sent at most every `group_interval`;
- an unchanged, unresolved group is sent again every `repeat_interval`, unless it was acknowledged;
- when its last alert resolves the group is resolved, and says so once (if it had said anything).
Silences are applied when a group is flushed: silenced alerts are left out, and a group with nothing else to say
sends nothing until the silence ends.

Everything here runs in the transaction of the alert change or of the sweep; a notification row is written with
the change that made it due, and its delivery task is queued when that commits (monitoring/background.py).
The workers (workers/notifications/) claim rows, call the transports and record each attempt here.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from monitoring import background
from monitoring.ack_links import ack_token
from monitoring.alert_actions import next_actions
from monitoring.models import (
    Alert,
    AlertGroup,
    DeliveryAttempt,
    Notification,
    NotificationChannel,
    RoutingRule,
    Silence,
)
from monitoring.services.audit import audit_record

DELIVER_TASK = "workers.tasks.deliver_notification_task"
FLUSH_TASK = "workers.tasks.flush_alert_group_task"
# A group due within this many seconds is flushed by its own task (so group_wait=0 means seconds, not the next
# sweep); later ones are left to the sweep, which runs every 15 s anyway.
FLUSH_TASK_WITHIN_S = 60
# Transient failures are retried for up to a day after the row was written: every RETRY_EARLY_S (with 10 %
# jitter, so a recovering receiver is not hit by every retry at once) during the first RETRY_EARLY_FOR, so a
# receiver back after a short outage hears within a minute; then with exponential backoff up to an hour, so one
# that stays down is asked about 25 more times that day, where every 50 s would be 1,600. The first success on a channel releases the rest of
# its backlog at once (notification_record), so only one row per channel has to find the receiver back.
RETRY_BASE_S = 30
RETRY_EARLY_S = 50
RETRY_EARLY_FOR = timedelta(hours=1)
RETRY_MAX_S = 3600
RETRY_FOR = timedelta(hours=24)
# A Retry-After longer than this is treated as this: the receiver is asked again within the hour anyway.
RETRY_AFTER_MAX_S = 3600
# The sweep flushes at most this many due groups per run (each a short transaction); the rest wait 15 s.
FLUSH_BATCH = 500


def _url(name: str, *args: object) -> str:
    return settings.PUBLIC_URL + reverse(name, args=args)


# ---------------------------------------------------------------- grouping, on every alert change


def alert_route(*, alert: Alert, now: datetime) -> None:
    """Put an alert that opened or changed into its groups, or let its groups know it resolved.

    Called by the alert services inside their transaction; the group rows are locked for the change.
    """
    rules = RoutingRule.objects.filter(team_id=alert.deployment.team_id)
    for rule in rules:
        if not rule.matches(alert):
            continue
        group = (
            AlertGroup.objects.select_for_update()
            .filter(deployment_id=alert.deployment_id, rule=rule, status=AlertGroup.Status.OPEN)
            .first()
        )
        if alert.status == Alert.Status.RESOLVED:
            if group is not None and group.alerts.filter(pk=alert.pk).exists():
                _group_changed(group, rule, now)
            continue
        if group is None:
            group = _group_open(alert=alert, rule=rule, now=now)
            if group is None:
                continue
        group.alerts.add(alert)
        _group_changed(group, rule, now)


@transaction.atomic
def alerts_route_open(*, team_id: int, now: datetime) -> int:
    """Route the team's unresolved alerts as if they had just opened: after its first rules are added, what is
    already wrong is sent too (grouped per deployment as usual). Returns how many alerts were routed."""
    alerts = list(Alert.objects.unresolved().filter(deployment__team_id=team_id).select_related("deployment"))
    for alert in alerts:
        alert_route(alert=alert, now=now)
    return len(alerts)


def _group_open(*, alert: Alert, rule: RoutingRule, now: datetime) -> AlertGroup | None:
    try:
        with transaction.atomic():
            return AlertGroup.objects.create(
                deployment_id=alert.deployment_id, rule=rule, created_at=now,
                due_at=now + timedelta(seconds=rule.group_wait_s),
            )
    except IntegrityError:  # another worker opened it a moment ago
        return (
            AlertGroup.objects.select_for_update()
            .filter(deployment_id=alert.deployment_id, rule=rule, status=AlertGroup.Status.OPEN)
            .first()
        )


def _group_changed(group: AlertGroup, rule: RoutingRule, now: datetime) -> None:
    """Something in the group changed: resolve it if nothing is unresolved, and make it due (not before the end
    of group_wait if it has never sent, and not sooner than group_interval after its last send)."""
    if not group.alerts.exclude(status=Alert.Status.RESOLVED).exists():
        group.status, group.resolved_at = AlertGroup.Status.RESOLVED, now
        if group.last_sent_at is None:  # resolved within group_wait: nobody was told, nobody needs to be
            group.due_at = None
            group.save()
            return
    if group.last_sent_at is None:
        first_due = max(now, group.created_at + timedelta(seconds=rule.group_wait_s))
    else:
        first_due = max(now, group.last_sent_at + timedelta(seconds=rule.group_interval_s))
    # Sooner than a repeat or the end of a silence the group was waiting for, never later than it was due.
    group.due_at = min(group.due_at, first_due) if group.due_at else first_due
    group.save()
    _schedule_flush(group, now)


def _schedule_flush(group: AlertGroup, now: datetime) -> None:
    if group.due_at is None:
        return
    wait = (group.due_at - now).total_seconds()
    if wait <= FLUSH_TASK_WITHIN_S:
        background.enqueue(FLUSH_TASK, group.pk, robust=True, countdown=max(wait, 0.0) or None)


# ---------------------------------------------------------------- flushing groups into notifications


def _digest(alerts: list[Alert]) -> str:
    # Acknowledged vs open is left out: acknowledging in-app is not news to send.
    state = sorted((a.pk, a.status == Alert.Status.RESOLVED, a.severity, a.title) for a in alerts)
    return hashlib.sha256(repr(state).encode()).hexdigest()


def _alert_item(alert: Alert) -> dict[str, Any]:
    actions = next_actions(alert)
    item: dict[str, Any] = {
        "id": alert.pk,
        "kind": alert.kind,
        "kind_label": alert.get_kind_display(),
        "severity": alert.severity,
        "status": alert.status,
        "title": alert.title,
        "message": alert.message,
        "opened_at": alert.created_at.isoformat(),
        "last_seen_at": alert.last_seen_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "url": _url("alert-detail", alert.pk),
        "report_url": None,
        "figures": alert.figures or {},
        "next_action": {"label": actions[0].label, "url": settings.PUBLIC_URL + actions[0].url} if actions else None,
    }
    if alert.drift_report_id:
        item["report_url"] = _url("drift-report", alert.deployment.slug, alert.drift_report_id)
    return item


def group_payload(*, group: AlertGroup, event: str, alerts: list[Alert], now: datetime) -> dict[str, Any]:
    """The notification body (docs/alerts.md, "The webhook body"): Standard Webhooks' {type, timestamp, data}."""
    deployment = group.deployment
    firing = [a for a in alerts if a.status != Alert.Status.RESOLVED]
    severities = [a.severity for a in firing] or [a.severity for a in alerts]
    worst = max(severities, key=lambda s: ["info", "warning", "critical"].index(s)) if severities else "info"
    if event == Notification.Event.RESOLVED:
        summary = f"Resolved on {deployment.name}: {len(alerts)} alert(s)"
    else:
        summary = f"{len(firing)} alert(s) on {deployment.name}: " + "; ".join(a.title for a in firing)
    return {
        "type": f"alert.{event}",
        "timestamp": now.isoformat(),
        "data": {
            "group_id": group.pk,
            "status": group.status,
            "severity": worst,
            "summary": summary,
            "team": deployment.team.slug,
            "deployment": {"slug": deployment.slug, "name": deployment.name, "url": _url("deployment", deployment.slug)},
            "alerts": [_alert_item(a) for a in alerts],
            "ack_url": _url("alert-ack", ack_token(group.pk)) if event == Notification.Event.FIRING else None,
        },
    }


def notification_direct(*, alert: Alert, recipients: list[str], headline: str) -> Notification:
    """An email to people rather than to a channel (a candidate to its team's approvers, a job's outcome to who
    queued it), in the transaction of the alert change; delivered, retried and recorded like any other."""
    now = timezone.now()
    deployment = alert.deployment
    payload = {
        "type": f"alert.{Notification.Event.FIRING}",
        "timestamp": now.isoformat(),
        "data": {
            "group_id": None, "status": alert.status, "severity": alert.severity, "summary": headline,
            "team": deployment.team.slug,
            "deployment": {"slug": deployment.slug, "name": deployment.name, "url": _url("deployment", deployment.slug)},
            "alerts": [_alert_item(alert)],
            "ack_url": None,
        },
    }
    notification = Notification.objects.create(
        channel=None, alert=alert, recipients=sorted(set(recipients)), event=Notification.Event.FIRING,
        payload=payload, created_at=now, next_attempt_at=now,
    )
    background.enqueue(DELIVER_TASK, notification.pk, robust=True)
    return notification


def _active_silences(team_id: int, now: datetime) -> list[Silence]:
    return list(Silence.objects.filter(team_id=team_id, starts_at__lte=now, ends_at__gt=now))


def silences_for(*, alert: Alert, now: datetime | None = None) -> list[Silence]:
    """The active silences that mute this alert."""
    return [s for s in _active_silences(alert.deployment.team_id, now or timezone.now()) if s.matches(alert)]


def alert_group_flush(*, group_id: int, now: datetime) -> list[int]:
    """Send what a due group has to say: one notification per enabled channel of its rule. Returns their ids.

    A group another sweep is flushing is skipped (SKIP LOCKED); one not due any more does nothing.
    """
    with transaction.atomic():
        group = (
            AlertGroup.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("deployment__team", "rule")
            .filter(pk=group_id, due_at__lte=now)
            .first()
        )
        if group is None:
            return []
        alerts = list(group.alerts.select_related("deployment").order_by("created_at", "id"))
        silences = _active_silences(group.deployment.team_id, now)
        shown = [a for a in alerts if not any(s.matches(a) for s in silences)]
        firing = [a for a in shown if a.status != Alert.Status.RESOLVED]
        if group.status == AlertGroup.Status.RESOLVED:
            event = Notification.Event.RESOLVED
            group.due_at = None
        elif not firing:
            # Everything unresolved is silenced: look again when the first of those silences ends.
            ends = [s.ends_at for s in silences if any(s.matches(a) for a in alerts if a.status != Alert.Status.RESOLVED)]
            group.due_at = min(ends) if ends else None
            group.save(update_fields=["due_at"])
            return []
        else:
            event = Notification.Event.FIRING
            group.due_at = now + timedelta(seconds=group.rule.repeat_interval_s)
        digest = _digest(shown)
        is_repeat = digest == group.last_sent_digest
        acknowledged = group.acknowledged_at is not None or all(a.status == Alert.Status.ACKNOWLEDGED for a in firing)
        if is_repeat and (acknowledged or event == Notification.Event.RESOLVED):
            group.due_at = None  # acknowledged: no more repeats; resolved: said once already
            group.save(update_fields=["due_at"])
            return []
        payload = group_payload(group=group, event=event, alerts=shown, now=now)
        channels = list(group.rule.channels.filter(enabled=True))
        notifications = Notification.objects.bulk_create(
            [Notification(group=group, channel=c, event=event, payload=payload, created_at=now, next_attempt_at=now)
             for c in channels]
        )
        group.last_sent_at, group.last_sent_digest = now, digest
        group.save(update_fields=["due_at", "last_sent_at", "last_sent_digest"])
        ids = [n.pk for n in notifications]
        for notification_id in ids:
            background.enqueue(DELIVER_TASK, notification_id, robust=True)
        return ids


def alert_groups_flush_due(*, now: datetime) -> list[int]:
    """The sweep's first half: flush every group that is due. Returns the notifications written."""
    due = list(
        AlertGroup.objects.filter(due_at__lte=now).order_by("due_at").values_list("pk", flat=True)[:FLUSH_BATCH]
    )
    written: list[int] = []
    for group_id in due:
        written += alert_group_flush(group_id=group_id, now=now)
    return written


@dataclass(frozen=True)
class AckResult:
    group: AlertGroup
    acknowledged_now: bool  # False: it already was (a replayed link), and nothing was written


@transaction.atomic
def alert_group_acknowledge(*, group: AlertGroup, by: AbstractBaseUser) -> AckResult:
    """Acknowledge a group from a notification's link: no more repeats, and its open alerts are acknowledged."""
    group = AlertGroup.objects.select_for_update().select_related("deployment").get(pk=group.pk)
    if group.acknowledged_at is not None:
        return AckResult(group=group, acknowledged_now=False)
    now = timezone.now()
    group.acknowledged_at, group.acknowledged_by = now, by  # type: ignore[assignment]
    group.save(update_fields=["acknowledged_at", "acknowledged_by"])
    open_ids = list(group.alerts.filter(status=Alert.Status.OPEN).values_list("pk", flat=True))
    Alert.objects.filter(pk__in=open_ids).update(status=Alert.Status.ACKNOWLEDGED)
    audit_record(
        action="alert_group.acknowledge", actor=by, deployment=group.deployment, obj=group,
        after={"alerts_acknowledged": open_ids, "via": "notification link"},
    )
    return AckResult(group=group, acknowledged_now=True)


# ---------------------------------------------------------------- delivery state, written by the workers


@transaction.atomic
def channel_test(*, channel: NotificationChannel, by: AbstractBaseUser) -> Notification:
    """Queue a test notification to the channel (enabled or not), delivered and recorded like any other."""
    now = timezone.now()
    payload = {
        "type": "test",
        "timestamp": now.isoformat(),
        "data": {
            "summary": f"Test notification from Watchkeeper to “{channel.name}”, sent by {by.get_username()}.",
            "team": channel.team.slug,
            "severity": "info",
            "alerts": [],
            "ack_url": None,
        },
    }
    notification = Notification.objects.create(
        channel=channel, event=Notification.Event.TEST, payload=payload, created_at=now, next_attempt_at=now
    )
    audit_record(action="channel.test", actor=by, obj=channel, after={"notification": notification.pk})
    background.enqueue(DELIVER_TASK, notification.pk, robust=True)
    return notification


def notification_claim(*, notification_id: int, now: datetime) -> Notification | None:
    """Claim a due notification for sending (pending -> sending, with a lease). None if another worker has it,
    it is not due, or an earlier notification of the same group to the same channel is still undelivered
    (notifications of a group arrive in order; the earlier one queues this one when it is done)."""
    notification = Notification.objects.filter(pk=notification_id).only("group_id", "channel_id").first()
    if notification is None:
        return None
    if notification.group_id is not None and Notification.objects.filter(
        group_id=notification.group_id, channel_id=notification.channel_id, pk__lt=notification_id,
        status__in=[Notification.Status.PENDING, Notification.Status.SENDING],
    ).exists():
        return None
    claimed = Notification.objects.filter(
        Q(channel__enabled=True) | Q(event=Notification.Event.TEST) | Q(channel__isnull=True),
        pk=notification_id, status=Notification.Status.PENDING, next_attempt_at__lte=now,
    ).update(status=Notification.Status.SENDING, lease_until=now + _lease(), attempts=F("attempts") + 1)
    if claimed != 1:
        return None
    return Notification.objects.select_related("channel__team", "group").get(pk=notification_id)


def _lease() -> timedelta:
    # A send takes at most the transport's timeout (10 s) plus its connect; a claimed row whose lease runs out
    # was lost with its worker, and the sweep hands it out again (with the same webhook-id).
    return timedelta(seconds=settings.ALERT_DELIVERY_LEASE_SECONDS)


def _backoff(attempts: int, age: timedelta) -> float:
    if age < RETRY_EARLY_FOR:
        delay = float(min(RETRY_BASE_S * 2 ** max(attempts - 1, 0), RETRY_EARLY_S))
    else:
        # Counted from the end of the early hour, so the first late retry is not an hour's wait at once.
        late = int((age - RETRY_EARLY_FOR).total_seconds() // RETRY_EARLY_S)
        delay = float(min(RETRY_EARLY_S * 2 ** min(max(late, 0), 10), RETRY_MAX_S))
    return delay * random.uniform(0.9, 1.1)


@dataclass(frozen=True)
class Recorded:
    status: str
    retry_in_s: float | None  # when a retry is scheduled
    next_in_order: int | None  # the next notification of the same group and channel, now free to go
    released: list[int] = field(default_factory=list)  # the channel's backlog, due now that it answered


def notification_record(
    *,
    notification: Notification,
    outcome: str,
    latency_ms: float,
    status_code: int | None = None,
    error: str = "",
    retry_after_s: float | None = None,
    now: datetime | None = None,
) -> Recorded:
    """Record one delivery attempt of a claimed notification and what follows from it: sent; retried later
    (transient, within RETRY_FOR of its creation); or failed for good, counting against its channel."""
    now = now or timezone.now()
    error = error[:1000]
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            notification=notification, at=now, outcome=outcome, status_code=status_code, latency_ms=latency_ms, error=error
        )
        retry_in: float | None = None
        if outcome == DeliveryAttempt.Outcome.SENT:
            status = Notification.Status.SENT
        elif outcome == DeliveryAttempt.Outcome.TRANSIENT:
            retry_in = (
                min(retry_after_s, RETRY_AFTER_MAX_S) if retry_after_s is not None
                else _backoff(notification.attempts, now - notification.created_at)
            )
            if now + timedelta(seconds=retry_in) > notification.created_at + RETRY_FOR:
                status, retry_in = Notification.Status.FAILED, None
                error = f"Gave up after {RETRY_FOR.total_seconds() / 3600:.0f} h of retries. Last error: {error}"[:1000]
            else:
                status = Notification.Status.PENDING
        else:
            status = Notification.Status.FAILED
        fields: dict[str, Any] = {"status": status, "lease_until": None, "last_error": error}
        if status == Notification.Status.SENT:
            fields["sent_at"] = now
        if retry_in is not None:
            fields["next_attempt_at"] = now + timedelta(seconds=retry_in)
            fields["retry_after_until"] = fields["next_attempt_at"] if retry_after_s is not None else None
        # Only while this worker still holds it: a worker that ran past its lease lost the row to another.
        Notification.objects.filter(pk=notification.pk, status=Notification.Status.SENDING).update(**fields)
        released: list[int] = []
        if notification.channel is not None and notification.event != Notification.Event.TEST:
            _channel_count(notification.channel, outcome=outcome, error=error)
            if outcome == DeliveryAttempt.Outcome.SENT:
                released = _channel_release(notification.channel.pk, now)
        next_id = None
        if status != Notification.Status.PENDING and notification.group_id is not None:
            next_id = (
                Notification.objects.filter(
                    group_id=notification.group_id, channel_id=notification.channel_id, pk__gt=notification.pk,
                    status=Notification.Status.PENDING,
                ).order_by("pk").values_list("pk", flat=True).first()
            )
    return Recorded(status=status, retry_in_s=retry_in, next_in_order=next_id, released=released)


# A backlog released at once is sent by this many tasks at a time; the rest go at the next sweep (15 s).
RELEASE_BATCH = 200


def _channel_release(channel_id: int, now: datetime) -> list[int]:
    """The channel answered: its notifications waiting out a backoff are due now (not those a Retry-After
    put off). Returns the ones to queue, the first of each group only (each queues its successor when done)."""
    waiting = Notification.objects.filter(
        channel_id=channel_id, status=Notification.Status.PENDING, next_attempt_at__gt=now,
    ).filter(Q(retry_after_until__isnull=True) | Q(retry_after_until__lte=now))
    ids = list(waiting.order_by("pk").values_list("pk", flat=True)[:RELEASE_BATCH])
    if not ids:
        return []
    Notification.objects.filter(pk__in=ids, status=Notification.Status.PENDING).update(next_attempt_at=now)
    firsts: dict[object, int] = {}
    for pk, group_id in Notification.objects.filter(pk__in=ids).order_by("pk").values_list("pk", "group_id"):
        firsts.setdefault(group_id if group_id is not None else ("solo", pk), pk)
    return sorted(firsts.values())


def _channel_count(channel: NotificationChannel, *, outcome: str, error: str) -> None:
    if outcome == DeliveryAttempt.Outcome.SENT:
        NotificationChannel.objects.filter(pk=channel.pk, consecutive_failures__gt=0).update(consecutive_failures=0)
        return
    if outcome != DeliveryAttempt.Outcome.PERMANENT:
        return
    NotificationChannel.objects.filter(pk=channel.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    limit = settings.ALERT_CHANNEL_DISABLE_AFTER
    disabled = NotificationChannel.objects.filter(pk=channel.pk, enabled=True, consecutive_failures__gte=limit).update(
        enabled=False, disabled_reason=f"Disabled after {limit} permanent failures in a row. Last: {error}"[:500]
    )
    if disabled:
        _channel_disabled(channel, limit=limit, error=error)


def _channel_disabled(channel: NotificationChannel, *, limit: int, error: str) -> None:
    from monitoring.services.alerts import alert_raise  # alerts route through this module

    audit_record(action="channel.disable", actor=None, actor_label="worker", obj=channel,
                 after={"enabled": False, "reason": f"{limit} permanent failures in a row", "error": error})
    # An alert needs a deployment: the team hears of it on each of its deployments (through its other channels too).
    for deployment in channel.team.deployments.all():
        alert_raise(
            deployment=deployment, kind=Alert.Kind.CHANNEL_DISABLED, dedup_key=f"channel-disabled:{channel.pk}",
            title=f"Notification channel “{channel.name}” was disabled",
            message=f"{limit} deliveries in a row failed permanently (last: {error}). Fix it and enable it again "
            "on the team's alerting page.",
            severity=Alert.Severity.WARNING,
        )


def notifications_requeue_expired(*, now: datetime) -> int:
    """Put back to pending the notifications whose sender's lease ran out (its worker died mid-send)."""
    return Notification.objects.filter(status=Notification.Status.SENDING, lease_until__lt=now).update(
        status=Notification.Status.PENDING, lease_until=None, next_attempt_at=now
    )
