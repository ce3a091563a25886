"""Alert dedup keys, built and read back only here. No Django here.

A check that fires again refreshes the one unresolved alert with its key (services.alert_raise) instead of
opening another, and resolves it by the same key when the condition clears.
"""

from __future__ import annotations

DATA_DRIFT_KEY = "drift:data"
PREDICTION_DRIFT_KEY = "drift:prediction"
CONCEPT_DRIFT_KEY = "drift:concept"
BATCH_REJECTED_KEY = "batch-rejected"

_METRIC = "metric"


def metric_key(*, metric: str, source: str) -> str:
    """A metric below its threshold, per evaluation source: a drop on the last day and on the week are two alerts."""
    return f"{_METRIC}:{metric}:{source}"


def metric_of(key: str) -> str | None:
    """The metric a metric_key names; None for any other key."""
    kind, _, rest = key.partition(":")
    if kind != _METRIC or ":" not in rest:
        return None
    return rest.rsplit(":", 1)[0]


def job_failed_key(*, job_id: int) -> str:
    return f"job:{job_id}"


LABELS_STOPPED_KEY = "traffic:labels-stopped"


def check_failing_key(*, check: str) -> str:
    """A scheduled check ("evaluation", "drift") failing repeatedly on a deployment."""
    return f"check-failing:{check}"


def candidate_waiting_key(*, version_id: int) -> str:
    return f"candidate:{version_id}"
