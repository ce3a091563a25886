"""Filters that put stored settings into words (monitoring/maintenance/wording.py)."""

from __future__ import annotations

from django import template
from django.utils import timezone

from monitoring.maintenance.wording import describe_trial, elapsed_words, job_settings

register = template.Library()


@register.filter
def trial_words(trial: dict) -> str:
    """A search trial ({"method": "distill", "params": {...}}) as "distillation at T=2, 8 hidden units"."""
    return describe_trial(trial.get("method", ""), trial.get("params") or {})


@register.filter
def settings_words(job) -> str:
    """A job's own settings as "Temperature 2 · Student hidden units 32"; "" for a kind without settings."""
    return " · ".join(f"{label} {value}" for label, value in job_settings(job.kind, job.params or {}))


@register.filter
def elapsed(job) -> str:
    """How long a job has run, or ran: "3 min 05 s"; "" before it starts."""
    if job.started_at is None:
        return ""
    return elapsed_words(((job.finished_at or timezone.now()) - job.started_at).total_seconds())
