"""Reads for progressive rollout: the live rollouts a worker checks, each version's traffic over a stage, and
what the deployment page shows (the current rollout, its guard series, past rollouts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.db.models import Sum
from django.utils import timezone

from monitoring import callstats
from monitoring.models import CallStats, Deployment, ModelVersion, Rollout, RolloutCheck
from monitoring.rollout.guards import CallTraffic, StageTraffic
from monitoring.selectors.traffic import production_window

LIVE = (Rollout.State.RUNNING, Rollout.State.PAUSED)


def rollouts_live() -> list[Rollout]:
    return list(Rollout.objects.filter(state__in=LIVE).select_related("deployment", "candidate", "baseline"))


def rollouts_watching(*, now: datetime) -> list[Rollout]:
    """Completed rollouts still in their watch period (auto-rollback)."""
    return list(
        Rollout.objects.filter(state=Rollout.State.COMPLETED, watch_until__gt=now)
        .select_related("deployment", "candidate", "baseline")
    )


def rollout_live_for(*, deployment: Deployment) -> Rollout | None:
    return Rollout.objects.filter(deployment=deployment, state__in=LIVE).select_related("candidate", "baseline").first()


def stage_traffic(*, deployment: Deployment, version: ModelVersion, start: datetime, end: datetime) -> StageTraffic:
    """One version's predictions in [start, end), with the labelled ones among them, and its reported calls."""
    window = production_window(deployment=deployment, start=start, end=end, version_id=version.pk)
    labelled = production_window(deployment=deployment, start=start, end=end, version_id=version.pk, labelled_only=True)
    return StageTraffic(
        predicted=window.predicted_index if window.predicted_index is not None else window.predicted,
        probabilities=window.probabilities,
        labelled_predicted=labelled.predicted_index,
        labelled_true=labelled.label_index,
        calls=stage_calls(deployment=deployment, version=version, start=start, end=end),
    )


def stage_calls(*, deployment: Deployment, version: ModelVersion, start: datetime, end: datetime) -> CallTraffic | None:
    """The version's reported calls in [start, end), summed (None when no client reported any): one 384-byte
    histogram per batch, so a million predictions in 1,000-row batches are a thousand small rows."""
    rows = CallStats.objects.filter(deployment=deployment, version=version, at__gte=start, at__lt=end)
    totals = rows.aggregate(calls=Sum("calls"), errors=Sum("errors"))
    if totals["calls"] is None:
        return None
    stacked = b"".join(bytes(data) for data in rows.values_list("latency_histogram", flat=True))
    histogram = np.frombuffer(stacked, dtype=callstats.HISTOGRAM_DTYPE).reshape(-1, callstats.N_BUCKETS).sum(
        axis=0, dtype=np.int64)
    return CallTraffic(histogram=histogram, calls=int(totals["calls"]), errors=int(totals["errors"]))


@dataclass(frozen=True)
class GuardSeries:
    guard: str
    threshold: float
    at: list[datetime] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    verdict: list[str] = field(default_factory=list)


def rollout_guard_series(*, rollout: Rollout) -> list[GuardSeries]:
    """Each guard's value against its threshold over the rollout, oldest first (the page's chart)."""
    series: dict[str, GuardSeries] = {}
    for check in RolloutCheck.objects.filter(rollout=rollout).order_by("at", "id"):
        s = series.setdefault(check.guard, GuardSeries(check.guard, check.threshold))
        s.at.append(check.at)
        s.value.append(check.value)
        s.verdict.append(check.verdict)
    return list(series.values())


def rollout_latest_checks(*, rollout: Rollout) -> list[RolloutCheck]:
    latest = RolloutCheck.objects.filter(rollout=rollout).order_by("-at").values_list("at", flat=True).first()
    return list(RolloutCheck.objects.filter(rollout=rollout, at=latest)) if latest else []


def rollout_history(*, deployment: Deployment, limit: int = 20) -> list[Rollout]:
    return list(
        Rollout.objects.filter(deployment=deployment).exclude(state__in=LIVE)
        .select_related("candidate", "baseline", "started_by", "ended_by")[:limit]
    )


def rollout_stage_elapsed(rollout: Rollout, *, now: datetime | None = None) -> float:
    return ((now or timezone.now()) - rollout.stage_started_at).total_seconds()
