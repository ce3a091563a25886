"""The dead man's switch (healthchecks' core idea): a served deployment that had traffic and went quiet."""

from __future__ import annotations

from datetime import datetime


def check_silent_deployments(*, deployment_ids: list[int], now: datetime) -> None:
    """Filled in below (issue 12, item 6)."""
