"""Machine access to the management API: personal access tokens and team service tokens.

Loaded by monitoring/models.py (and importable from there). Like the ingestion ApiToken, only the sha256 of a
token's secret is stored; the plaintext (`wkp_<prefix>_<secret>` or `wks_<prefix>_<secret>`) is shown once.

A personal token acts as its owner: the owner's role in each team, no more. A service token acts as a user of
its own (unusable password, so it can never log in), a member of one team with the token's role, so every
access check, foreign key and audit entry works as for a person, and the audit log names it `wks_<prefix>`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from monitoring.models import Role, Team


class MachineToken(models.Model):
    class Kind(models.TextChoices):
        PERSONAL = "personal", "Personal access token"
        SERVICE = "service", "Team service token"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Personal: the owner. Service: the token's own user, created with it.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="machine_tokens")
    # Service tokens only: the team they belong to, and their role in it (viewer or operator; approver only while
    # the team's service_tokens_may_approve is on).
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="service_tokens")
    role = models.CharField(max_length=16, choices=Role.choices, blank=True)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind="personal", team__isnull=True) | models.Q(kind="service", team__isnull=False)),
                name="machine_token_team_iff_service",
            )
        ]

    @property
    def scheme(self) -> str:
        return "wkp" if self.kind == self.Kind.PERSONAL else "wks"

    @property
    def display(self) -> str:
        return f"{self.scheme}_{self.prefix}"

    def is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def __str__(self) -> str:
        return f"{self.name} ({self.display}_…)"
