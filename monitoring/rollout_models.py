"""Progressive rollout (issue 14): a deployment's default plan, each rollout of a candidate through its stages,
and every guard check made on a stage's traffic (the series the deployment page draws).

Loaded by monitoring/models.py (and importable from there). Services write these rows
(monitoring/services/rollouts.py); the worker checks the guards (workers/rollout.py).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from monitoring.models import Deployment, ModelVersion

# 10 % for 30 min, then 50 % for 30 min, then everyone. A stage's share is of instances, assigned by a stable
# hash of the instance id (monitoring/rollout/assignment.py).
DEFAULT_STAGES = [
    {"share": 0.1, "min_minutes": 30, "min_predictions": 500},
    {"share": 0.5, "min_minutes": 30, "min_predictions": 1000},
    {"share": 1.0, "min_minutes": 0, "min_predictions": 0},
]


class RolloutPlan(models.Model):
    """A deployment's default plan; an approver may override the stages when starting a rollout."""

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="rollout_plan")
    stages = models.JSONField(default=list)  # [{"share", "min_minutes", "min_predictions"}], last share 1.0
    # Guard settings over the defaults (monitoring.rollout.guards.GuardConfig): {"class_shift": {"threshold": ..}}.
    guards = models.JSONField(default=dict, blank=True)
    # After completion the guards keep watching for this long; a breach rolls back if auto_rollback, else alerts.
    watch_minutes = models.PositiveIntegerField(default=60)
    auto_rollback = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)


class Rollout(models.Model):
    class State(models.TextChoices):
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        ABORTED = "aborted", "Aborted"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="rollouts")
    candidate = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="rollouts")
    # The version serving everyone else while it runs (and the one an abort leaves in place).
    baseline = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    stages = models.JSONField(default=list)  # copied from the plan (or the override) when it starts
    guards = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    # Index into stages. Moved only by a conditional update on (state, stage): two transitions never both happen.
    stage = models.PositiveSmallIntegerField(default=0)
    stage_started_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(default=timezone.now)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # "completed", "aborted by alice: …", "rolled back by guard class_shift: …"
    outcome = models.TextField(blank=True)
    # Set on completion: until then the guards keep watching the promoted version (auto-rollback).
    watch_until = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment"], condition=Q(state__in=["running", "paused"]),
                name="rollout_one_live_per_deployment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment.slug} v{self.candidate.number} rollout ({self.state})"

    @property
    def is_live(self) -> bool:
        return self.state in {self.State.RUNNING, self.State.PAUSED}

    @property
    def share(self) -> float:
        """The share of instances on the candidate now (0 once it has ended)."""
        if not self.is_live or not self.stages:
            return 0.0
        return float(self.stages[self.stage]["share"])


class RolloutCheck(models.Model):
    """One guard's verdict on one stage's traffic at one time."""

    class Verdict(models.TextChoices):
        PASS = "pass", "Pass"
        BREACH = "breach", "Breach"
        WAIT = "wait", "Too few rows: waiting"

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="checks")
    stage = models.PositiveSmallIntegerField()
    at = models.DateTimeField(default=timezone.now)
    guard = models.CharField(max_length=32)
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    value = models.FloatField(null=True)
    threshold = models.FloatField()
    p_value = models.FloatField(null=True)
    n_candidate = models.PositiveIntegerField(default=0)
    n_active = models.PositiveIntegerField(default=0)
    figures = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["rollout", "guard", "at"], name="rollout_check_series_idx")]
