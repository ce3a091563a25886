"""Which deployments are due a scheduled check, read from Postgres (the checks' own rows), never from the broker.

Beat only pokes: it sends the fan-out tasks every settings.CHECK_SWEEP_SECONDS (a minute), and each deployment
is due once its own interval has passed since its last check. A tick lost with the broker (Redis down, a queue that kept nothing)
then costs a sweep, not a whole interval: the next sweep that reaches a worker finds the check still due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max

from monitoring.models import Deployment, ScheduledCheckState


def last_checked(*, check: str, deployment_ids: list[int]) -> dict[int, datetime]:
    """When each deployment's scheduled `check` last came to an outcome, success or failure."""
    rows = ScheduledCheckState.objects.filter(deployment_id__in=deployment_ids, check_name=check).values_list(
        "deployment_id", "last_succeeded_at", "last_failed_at"
    )
    return {pk: max(t for t in times if t is not None) for pk, *times in rows if any(times)}


def is_due(last: datetime | None, *, every: timedelta, now: datetime) -> bool:
    # Half a sweep early, so a check that finished a few seconds after its tick is not a whole sweep late.
    return last is None or now - last >= every - timedelta(seconds=settings.CHECK_SWEEP_SECONDS / 2)


def deployments_due_for_evaluation(*, deployment_ids: list[int], now: datetime) -> list[int]:
    """Of these deployments, those not evaluated (to success or failure) in the last EVALUATION_INTERVAL_MINUTES."""
    every = timedelta(minutes=settings.EVALUATION_INTERVAL_MINUTES)
    last = last_checked(check="evaluation", deployment_ids=deployment_ids)
    return [pk for pk in deployment_ids if is_due(last.get(pk), every=every, now=now)]


def deployments_due_for_drift(*, deployment_ids: list[int], now: datetime) -> list[int]:
    """Of these deployments, those whose drift interval (their own, else DRIFT_INTERVAL_MINUTES) has passed since
    their last check: its last report, or its last scheduled check that stored none (no traffic yet)."""
    # One query for the reports of every deployment, one for the check states: beat runs this each sweep.
    rows = (
        Deployment.objects.filter(pk__in=deployment_ids)
        .annotate(last_report=Max("drift_reports__created_at"))
        .values_list("pk", "drift_interval_minutes", "last_report")
    )
    attempts = last_checked(check="drift", deployment_ids=deployment_ids)
    due = []
    for pk, interval, last_report in rows:
        last = max((t for t in (last_report, attempts.get(pk)) if t is not None), default=None)
        if is_due(last, every=timedelta(minutes=interval or settings.DRIFT_INTERVAL_MINUTES), now=now):
            due.append(pk)
    return due
