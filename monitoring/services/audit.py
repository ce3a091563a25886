"""The audit trail: every service writes its AuditEvent in its own transaction."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Model

from monitoring.models import (
    AuditEvent,
    Deployment,
    ModelVersion,
)


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | None,
    actor_label: str = "",
    deployment: Deployment | None = None,
    obj: Model | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    comment: str = "",
) -> AuditEvent:
    label = actor_label or (actor.get_username() if actor is not None else "system")
    return AuditEvent.objects.create(
        actor=actor,
        actor_label=label,
        action=action,
        deployment=deployment,
        object_type=type(obj).__name__ if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        before=before,
        after=after,
        comment=comment,
    )


def _version_state(version: ModelVersion) -> dict[str, Any]:
    return {"version": version.number, "status": version.status, "sha256": version.sha256}
