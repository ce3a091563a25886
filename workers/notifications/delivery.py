"""The delivery loop (after healthchecks' sendalerts): claim a notification with a conditional update, send it
with its channel's transport, record the attempt. Tasks call these; tests and the bench call them directly."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from monitoring import selectors, services, telemetry
from monitoring.models import DeliveryAttempt
from workers.notifications.base import TransportError, transport_for
from workers.notifications.email import send_direct

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    notification_id: int
    status: str  # "skipped" when it could not be claimed (another worker has it, not due, waiting its turn)
    retry_in_s: float | None = None
    next_in_order: int | None = None
    released: list[int] = field(default_factory=list)  # the channel's backlog, due now that it answered


def deliver(notification_id: int, *, now: datetime | None = None) -> Delivered:
    """Send one notification if it can be claimed now; record the outcome."""
    notification = services.notification_claim(notification_id=notification_id, now=now or timezone.now())
    if notification is None:
        return Delivered(notification_id, "skipped")
    channel = notification.channel
    started = time.perf_counter()
    try:
        if channel is None:  # a direct email to people (notification.recipients)
            sent = send_direct(notification)
        else:
            sent = transport_for(channel.kind).send(notification=notification, channel=channel)
    except TransportError as exc:
        outcome = DeliveryAttempt.Outcome.PERMANENT if exc.permanent else DeliveryAttempt.Outcome.TRANSIENT
        recorded = services.notification_record(
            notification=notification, outcome=outcome, latency_ms=(time.perf_counter() - started) * 1000,
            status_code=exc.status_code, error=exc.message, retry_after_s=exc.retry_after_s,
        )
        logger.info("notification %s to %s failed (%s): %s", notification.pk, channel or notification.recipients,
                    outcome, exc.message)
    else:
        recorded = services.notification_record(
            notification=notification, outcome=DeliveryAttempt.Outcome.SENT,
            latency_ms=(time.perf_counter() - started) * 1000, status_code=sent.status_code,
        )
    _count(channel.kind if channel is not None else "direct_email", recorded.status)
    return Delivered(notification_id, recorded.status, recorded.retry_in_s, recorded.next_in_order, recorded.released)


def _count(channel_kind: str, status: str) -> None:
    """One attempt: sent, retrying (a transient failure with time left), or failed for good."""
    outcome = {"sent": "sent", "pending": "retrying"}.get(status, "failed")
    telemetry.notification_deliveries.labels(channel_kind=channel_kind, outcome=outcome).inc()
    if outcome != "sent":
        telemetry.notification_failures.labels(channel_kind=channel_kind).inc()


@dataclass
class Swept:
    flushed: list[int] = field(default_factory=list)  # notifications written by groups that were due
    requeued: int = 0  # leases that ran out (their worker died)
    due: list[int] = field(default_factory=list)  # pending notifications whose time has come


def sweep(*, now: datetime | None = None) -> Swept:
    """The beat's sweep: flush due groups, take back expired leases, and list what is due to send."""
    now = now or timezone.now()
    swept = Swept(flushed=services.alert_groups_flush_due(now=now))
    swept.requeued = services.notifications_requeue_expired(now=now)
    swept.due = selectors.notifications_due_ids(now=now)
    return swept


def deliver_due(*, now: datetime | None = None) -> list[Delivered]:
    """Everything due now, in this process and in order (tests, `manage.py` use, the embedded mode)."""
    now = now or timezone.now()
    results: list[Delivered] = []
    queue = list(sweep(now=now).due)
    while queue:  # as the worker does: each delivery may free its group's next one and its channel's backlog
        result = deliver(queue.pop(0), now=now)
        results.append(result)
        queue += [i for i in [result.next_in_order, *result.released] if i is not None and i not in queue]
    return results
