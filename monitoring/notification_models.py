"""Alert delivery: where a team's alerts go (channels, routing rules), what is muted (silences), how alerts are
grouped into notifications (Alertmanager's model), and the outbox of notifications with every delivery attempt.

Loaded by monitoring/models.py (and importable from there). Services write these rows
(monitoring/services/notifications.py); the workers deliver them (workers/notifications/).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from monitoring.models import Alert, Deployment, Team

SEVERITY_RANK = {Alert.Severity.INFO: 0, Alert.Severity.WARNING: 1, Alert.Severity.CRITICAL: 2}


def _webhook_id() -> str:
    # Standard Webhooks' `webhook-id`: stable across retries, so a receiver can drop a redelivery.
    return f"msg_{uuid.uuid4().hex}"


class NotificationChannel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack"
        WEBHOOK = "webhook", "Webhook (Standard Webhooks)"
        APPRISE = "apprise", "Apprise URL (Teams, Discord, PagerDuty, Telegram, …)"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="channels")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=100)
    # What is not secret: email recipients {"to": [...]}, a webhook's {"url": ...}, and for the URL-is-the-secret
    # kinds (Slack, Apprise) the host alone, {"display": "hooks.slack.com"}, so pages can say where it goes.
    config = models.JSONField(default=dict, blank=True)
    # Fernet-encrypted (monitoring/sealing.py): a webhook's signing secret (whsec_…), or the whole URL of a Slack or
    # Apprise channel, whose token is in the URL. Decrypted only to send; shown once, when created.
    secret_sealed = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    # Permanent failures in a row; at CHANNEL_DISABLE_AFTER the channel is disabled and the team alerted.
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="channel_unique_team_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def target_display(self) -> str:
        if self.kind == self.Kind.EMAIL:
            return ", ".join(self.config.get("to", []))
        if self.kind == self.Kind.WEBHOOK:
            return str(self.config.get("url", ""))
        return str(self.config.get("display", ""))


class RoutingRule(models.Model):
    """Alerts of the team that match (deployment or all, at least `min_severity`, one of `kinds` or any) go to
    `channels`, grouped per deployment with the three intervals (seconds)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="routing_rules")
    name = models.CharField(max_length=100)
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    min_severity = models.CharField(max_length=16, choices=Alert.Severity.choices, default=Alert.Severity.WARNING)
    kinds = models.JSONField(default=list, blank=True)  # [] = every kind
    channels = models.ManyToManyField(NotificationChannel, related_name="rules")
    group_wait_s = models.PositiveIntegerField(default=30)
    group_interval_s = models.PositiveIntegerField(default=300)
    repeat_interval_s = models.PositiveIntegerField(default=4 * 3600)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def matches(self, alert: Alert) -> bool:
        return (
            (self.deployment_id is None or self.deployment_id == alert.deployment_id)
            and SEVERITY_RANK[Alert.Severity(alert.severity)] >= SEVERITY_RANK[Alert.Severity(self.min_severity)]
            and (not self.kinds or alert.kind in self.kinds)
        )


class Silence(models.Model):
    """Mutes the team's matching alerts' notifications until `ends_at`; the alerts still open in-app.
    An empty matcher matches anything."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="silences")
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, blank=True)
    severity = models.CharField(max_length=16, blank=True, choices=Alert.Severity.choices)
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    comment = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-ends_at", "-id"]

    def matches(self, alert: Alert) -> bool:
        return (
            (self.deployment_id is None or self.deployment_id == alert.deployment_id)
            and (not self.kind or self.kind == alert.kind)
            and (not self.severity or self.severity == alert.severity)
        )

    def is_active(self, now: datetime | None = None) -> bool:
        at = now or timezone.now()
        return self.starts_at <= at < self.ends_at


class AlertGroup(models.Model):
    """The alerts of one deployment routed by one rule while the incident lasts: one notification lists them all.

    `due_at` is when the group next has something to send (the end of group_wait, a change after group_interval,
    a repeat, the resolution); the beat sweep flushes groups that are due.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="alert_groups")
    rule = models.ForeignKey(RoutingRule, on_delete=models.CASCADE, related_name="groups")
    alerts = models.ManyToManyField(Alert, related_name="groups")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    # What the last notification said (its alerts, their severities, titles, resolved or not): a flush that would
    # say the same again is a repeat, which an acknowledgement stops.
    last_sent_digest = models.CharField(max_length=64, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweep: "groups with something due by now".
            models.Index(fields=["due_at"], name="alert_group_due_idx", condition=Q(due_at__isnull=False)),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "rule"], condition=Q(status="open"), name="alert_group_one_open_per_rule"
            )
        ]


class Notification(models.Model):
    """One message to one channel: the outbox row, written in the transaction that made it due.

    The payload is a snapshot, so a retry sends what the first attempt sent. The delivery task claims the row
    (pending -> sending, with a lease); a lease that runs out means the worker died, and the sweep puts the row
    back to pending with the same webhook_id.
    """

    class Event(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"
        TEST = "test", "Test"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    group = models.ForeignKey(AlertGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications")
    # None for a direct email to people (a candidate to its team's approvers, a job to who queued it): then
    # `recipients` holds the addresses and `alert` what it is about.
    channel = models.ForeignKey(
        NotificationChannel, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    recipients = models.JSONField(default=list, blank=True)
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="direct_notifications")
    # An alert group's firing/resolved/test, or a CD event (monitoring/services/events.py: "rollout.completed").
    event = models.CharField(max_length=32, choices=Event.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    # Set from a receiver's Retry-After: a success elsewhere on the channel does not release this row earlier.
    retry_after_until = models.DateTimeField(null=True, blank=True)
    webhook_id = models.CharField(max_length=64, unique=True, default=_webhook_id)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweep: "pending rows due by now" and "sending rows whose lease ran out".
            models.Index(fields=["status", "next_attempt_at"], name="notification_due_idx"),
            # A channel's page: its last deliveries.
            models.Index(fields=["channel", "-created_at"], name="notification_channel_idx"),
        ]


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        SENT = "sent", "Sent"
        TRANSIENT = "transient", "Failed, will retry"
        PERMANENT = "permanent", "Failed permanently"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="delivery_attempts")
    at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.FloatField()
    error = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["at", "id"]


class ScheduledCheckState(models.Model):
    """Consecutive failures of one deployment's scheduled check ("evaluation", "drift"): at
    settings.ALERT_CHECK_FAILURES in a row a check_failing alert opens; the next success resolves it."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    check_name = models.CharField(max_length=32)
    consecutive_failures = models.PositiveIntegerField(default=0)
    first_failed_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    last_succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["deployment", "check_name"], name="check_state_unique")]


class DigestPreference(models.Model):
    """A user's choice to get the weekly digest email of each of their teams (off unless they opt in)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="digest_preference")
    weekly_digest = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)


class DigestSent(models.Model):
    """One digest per user, team and week: the claim row written before the mail goes, so a second run of the
    weekly task sends nothing."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    week_start = models.DateField()
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team", "week_start"], name="digest_once_per_week")]
