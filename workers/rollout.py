"""Rollout guards on a worker: each live rollout's stage traffic, candidate against active over the same period.

A breach aborts the rollout (every instance back on the active version, an alert naming the guard). A stage
whose minimum time and predictions are met and whose required guards have rows enough passes: the rollout
advances, and from the last stage but one the candidate becomes active. Paused rollouts are checked (a breach
still aborts) but never advanced. Transitions are claimed in the services by a conditional update, so a
redelivered or concurrent check is harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction

from monitoring import selectors, services
from monitoring.models import Rollout
from monitoring.rollout.guards import GuardConfig, breaches, evaluate_guards, waiting_on

log = logging.getLogger(__name__)


def check_rollout(*, rollout: Rollout, now: datetime) -> str:
    """One check: "aborted", "advanced", "completed", "waiting" or "paused"."""
    deployment = rollout.deployment
    start = rollout.stage_started_at
    candidate = selectors.stage_traffic(deployment=deployment, version=rollout.candidate, start=start, end=now)
    active = selectors.stage_traffic(deployment=deployment, version=rollout.baseline, start=start, end=now)
    results = evaluate_guards(candidate, active, n_classes=len(deployment.class_labels),
                              config=GuardConfig.from_dict(rollout.guards))
    # The checks and the transition they lead to commit together: nobody sees a check without its outcome.
    with transaction.atomic():
        services.rollout_checks_record(rollout=rollout, results=results, at=now)
        return _decide(rollout, results, candidate_rows=len(candidate.predicted), now=now)


def _decide(rollout: Rollout, results: list, *, candidate_rows: int, now: datetime) -> str:
    breached = breaches(results)
    try:
        if breached:
            services.rollout_abort(rollout=rollout, by=None, breached=breached)
            return "aborted"
        if rollout.state == Rollout.State.PAUSED:
            return "paused"
        stage = rollout.stages[rollout.stage]
        elapsed_minutes = (now - rollout.stage_started_at).total_seconds() / 60
        if elapsed_minutes < stage["min_minutes"] or candidate_rows < stage["min_predictions"]:
            return "waiting"
        if waiting_on(results):
            return "waiting"
        summary = "; ".join(r.describe() for r in results if r.verdict == "pass")
        moved = services.rollout_advance(rollout=rollout, from_stage=rollout.stage, by=None,
                                         reason=f"stage {rollout.stage + 1} passed: {summary}")
        return "completed" if moved.state == Rollout.State.COMPLETED else "advanced"
    except services.Conflict:
        return "waiting"  # someone moved it meanwhile (an approver, another check): theirs stands


def watch_promoted(*, rollout: Rollout, now: datetime) -> str:
    """After completion, for the plan's watch period: the promoted version's traffic since then against the
    previous version's during the rollout (it no longer serves, so the same period cannot be had)."""
    assert rollout.ended_at is not None
    deployment = rollout.deployment
    promoted = selectors.stage_traffic(deployment=deployment, version=rollout.candidate, start=rollout.ended_at, end=now)
    previous = selectors.stage_traffic(deployment=deployment, version=rollout.baseline, start=rollout.started_at,
                                       end=rollout.ended_at)
    results = evaluate_guards(promoted, previous, n_classes=len(deployment.class_labels),
                              config=GuardConfig.from_dict(rollout.guards))
    with transaction.atomic():
        services.rollout_checks_record(rollout=rollout, results=results, at=now)
        breached = breaches(results)
        return (services.rollout_watch_breach(rollout=rollout, breached=breached) or "watching") if breached else "watching"


def check_rollouts(*, now: datetime) -> dict[int, str]:
    outcomes = {}
    for rollout in selectors.rollouts_watching(now=now):
        outcomes[rollout.pk] = watch_promoted(rollout=rollout, now=now)
    for rollout in selectors.rollouts_live():
        outcomes[rollout.pk] = check_rollout(rollout=rollout, now=now)
        log.info("rollout %s (%s v%s): %s", rollout.pk, rollout.deployment.slug, rollout.candidate.number,
                 outcomes[rollout.pk])
    return outcomes
