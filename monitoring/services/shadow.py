"""Shadow replays: a candidate run over recent production inputs (computed in workers/shadow.py)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from monitoring import background
from monitoring.models import ModelVersion, ShadowReplay


def shadow_replay_request(*, candidate: ModelVersion, active: ModelVersion | None) -> ShadowReplay:
    """Queue the candidate's replay once (a second call returns the stored row and queues nothing)."""
    replay, created = ShadowReplay.objects.get_or_create(
        candidate=candidate,
        defaults={"deployment_id": candidate.deployment_id, "active": active, "row_cap": settings.SHADOW_REPLAY_MAX_ROWS},
    )
    if created:
        background.enqueue("workers.tasks.shadow_replay_task", replay.pk, robust=True)
    return replay


def shadow_replay_claim(*, replay_id: int) -> bool:
    """queued -> running; False when another delivery of the task has it (or it is done)."""
    return bool(ShadowReplay.objects.filter(pk=replay_id, status=ShadowReplay.Status.QUEUED).update(
        status=ShadowReplay.Status.RUNNING, started_at=timezone.now()
    ))


def shadow_replay_complete(
    *, replay_id: int, results: dict, n_rows: int, window_start: datetime, window_end: datetime
) -> bool:
    return bool(ShadowReplay.objects.filter(pk=replay_id, status=ShadowReplay.Status.RUNNING).update(
        status=ShadowReplay.Status.SUCCEEDED, results=results, n_rows=n_rows, window_start=window_start,
        window_end=window_end, error="", computed_at=timezone.now(),
    ))


def shadow_replay_fail(*, replay_id: int, error: str) -> bool:
    return bool(ShadowReplay.objects.filter(pk=replay_id, status=ShadowReplay.Status.RUNNING).update(
        status=ShadowReplay.Status.FAILED, error=error[:2000], computed_at=timezone.now()
    ))
