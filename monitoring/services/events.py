"""Events for CD systems (docs/rollout.md, "Events"): version and rollout changes sent through the team's signed
webhook channels that subscribe to them (channel config "events"), as outbox rows delivered like alerts.

Written in the transaction of the change they describe, so an event goes out only if the change committed, and
once (the outbox row's webhook-id is stable across retries)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from monitoring import background
from monitoring.models import Deployment, Notification, NotificationChannel
from monitoring.services.audit import audit_record
from monitoring.services.errors import ValidationFailed
from monitoring.services.notifications import DELIVER_TASK

EVENT_TYPES = (
    "version.registered", "version.approved", "version.rolled_back",
    "rollout.started", "rollout.advanced", "rollout.paused", "rollout.resumed", "rollout.aborted", "rollout.completed",
)


def event_emit(*, deployment: Deployment, event: str, data: dict) -> int:
    """Queue `event` to every enabled webhook channel of the deployment's team subscribed to it. Returns how many."""
    assert event in EVENT_TYPES, event
    channels = [c for c in NotificationChannel.objects.filter(
        team_id=deployment.team_id, kind=NotificationChannel.Kind.WEBHOOK, enabled=True
    ) if event in (c.config or {}).get("events", [])]
    now = timezone.now()
    payload = {"type": event, "timestamp": now.isoformat(),
               "data": {"deployment": deployment.slug, "team": deployment.team.slug} | data}
    for channel in channels:
        notification = Notification.objects.create(
            channel=channel, event=event, payload=payload, created_at=now, next_attempt_at=now
        )
        background.enqueue(DELIVER_TASK, notification.pk, robust=True)
    return len(channels)


def channel_events_set(*, channel: NotificationChannel, events: list[str], by: AbstractBaseUser) -> NotificationChannel:
    """Subscribe a webhook channel to these event types (replacing its list)."""
    if channel.kind != NotificationChannel.Kind.WEBHOOK:
        raise ValidationFailed("Only webhook channels carry events; add a webhook channel for your CD system.",
                               errors=[{"field": "events", "message": "not a webhook channel"}])
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed(f"Unknown event types: {', '.join(unknown)}. The types are {', '.join(EVENT_TYPES)}.",
                               errors=[{"field": "events", "message": "unknown event type"}])
    before = list((channel.config or {}).get("events", []))
    channel.config = (channel.config or {}) | {"events": sorted(set(events))}
    channel.save(update_fields=["config"])
    audit_record(action="channel.events", actor=by, obj=channel, before={"events": before},
                 after={"events": channel.config["events"]})
    return channel
