"""Reads for alert delivery: a team's channels, rules and silences, a channel's last deliveries, an alert's
notifications, and what the sweep has to do."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from monitoring.models import (
    Alert,
    AlertGroup,
    DeliveryAttempt,
    Notification,
    NotificationChannel,
    RoutingRule,
    Silence,
    Team,
)

LAST_DELIVERIES = 20


def channels_for(*, team: Team) -> QuerySet[NotificationChannel]:
    return NotificationChannel.objects.filter(team=team).order_by("name", "id")


def rules_for(*, team: Team) -> QuerySet[RoutingRule]:
    return RoutingRule.objects.filter(team=team).select_related("deployment").prefetch_related("channels")


def silences_for_team(*, team: Team, include_ended: bool = False) -> QuerySet[Silence]:
    silences = Silence.objects.filter(team=team).select_related("deployment", "author")
    if not include_ended:
        silences = silences.filter(ends_at__gt=timezone.now())
    return silences


def _with_attempts(notifications: QuerySet[Notification]) -> QuerySet[Notification]:
    return notifications.select_related("channel").prefetch_related(
        Prefetch("delivery_attempts", queryset=DeliveryAttempt.objects.order_by("at", "id"))
    )


def channel_deliveries(*, channel: NotificationChannel, limit: int = LAST_DELIVERIES) -> list[Notification]:
    """The channel's last notifications, newest first, each with its attempts."""
    return list(_with_attempts(channel.notifications.order_by("-created_at", "-id"))[:limit])


def alert_notifications(*, alert: Alert) -> list[Notification]:
    """Every notification that listed this alert (through its groups), oldest first, with their attempts."""
    return list(
        _with_attempts(Notification.objects.filter(Q(group__alerts=alert) | Q(alert=alert)).order_by("created_at", "id"))
        .distinct()
    )


def alert_groups_of(*, alert: Alert) -> list[AlertGroup]:
    return list(alert.groups.select_related("rule", "acknowledged_by").order_by("created_at"))


def active_silences_matching(*, alert: Alert, now: datetime | None = None) -> list[Silence]:
    now = now or timezone.now()
    candidates = Silence.objects.filter(team_id=alert.deployment.team_id, starts_at__lte=now, ends_at__gt=now)
    return [s for s in candidates.select_related("author") if s.matches(alert)]


def notifications_due_ids(*, now: datetime, limit: int = 1000) -> list[int]:
    """Pending notifications whose time has come, oldest first (the sweep queues them; claiming is safe to
    repeat, so a row queued twice is still sent once)."""
    return list(
        Notification.objects.filter(status=Notification.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(channel__enabled=True) | Q(event=Notification.Event.TEST) | Q(channel__isnull=True))
        .order_by("pk").values_list("pk", flat=True)[:limit]
    )


def last_predictions_received(*, deployment_ids: list[int]) -> dict[int, datetime]:
    """When each deployment last received a prediction batch (the dead man's switch); absent: never."""
    from django.db.models import Max

    from monitoring.models import PredictionBatch

    rows = (
        PredictionBatch.objects.filter(deployment_id__in=deployment_ids).values("deployment_id")
        .annotate(last=Max("received_at")).values_list("deployment_id", "last")
    )
    return {deployment_id: last for deployment_id, last in rows}


def last_labels_received(*, deployment_ids: list[int]) -> dict[int, datetime]:
    """When each deployment last had a label joined to a prediction; absent: never. Reads the labelled rows only
    (the partial index prediction_labelled_idx leads with the deployment), once per beat of the traffic check."""
    from django.db.models import Max

    from monitoring.models import Prediction

    rows = (
        Prediction.objects.filter(deployment_id__in=deployment_ids, label_index__isnull=False).values("deployment_id")
        .annotate(last=Max("labelled_at")).values_list("deployment_id", "last")
    )
    return {deployment_id: last for deployment_id, last in rows if last is not None}
