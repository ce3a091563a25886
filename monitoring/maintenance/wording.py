"""Maintenance settings and steps in words, for job pages and progress lines. No Django here.

A job's `params` hold only the settings of its own kind (applicability.clean_params); these name them the way the
queue form does, so "{'temperature': 2.0, 'hidden_units': 32}" reads "T=2, 32 hidden units".
"""

from __future__ import annotations

from typing import Any

from monitoring.maintenance.applicability import PARAMS
from monitoring.maintenance.compression.low_rank import DEFAULT_ENERGY
from monitoring.maintenance.compression.prune import DEFAULT_SPARSITY
from monitoring.maintenance.compression.weight_sharing import DEFAULT_CLUSTERS

# Each setting's label (as on the queue form) and how a value of it reads in a sentence.
SETTING_LABELS: dict[str, str] = {
    "alpha": "Pruning threshold (α × max|W|)",
    "sparsity": "Pruning sparsity",
    "energy": "SVD retained energy",
    "clusters": "k-means clusters",
    "temperature": "Temperature",
    "hidden_units": "Student hidden units",
    "search_seconds": "Hyperparameter search budget",
    "tolerance": "F1 tolerance",
}

# What a job of each kind does when a setting is left empty: the compression methods' own defaults, and
# workers/distill.py's and workers/search.py's (workers import monitoring, not the reverse; the tests check these
# agree with them).
SETTING_DEFAULTS: dict[str, dict[str, Any]] = {
    "distill": {"temperature": 2.0, "hidden_units": 8},
    "retrain": {"search_seconds": 0},
    "find_smaller": {"tolerance": 1.0},
    "compress_prune": {"sparsity": DEFAULT_SPARSITY},
    "compress_low_rank": {"energy": DEFAULT_ENERGY},
    "compress_kmeans": {"clusters": DEFAULT_CLUSTERS},
}

# A search's method keys (compression/methods.py, plus distillation) in words.
METHOD_WORDS: dict[str, str] = {
    "int8_dynamic": "int8 dynamic quantization",
    "int8_static": "int8 static quantization",
    "prune": "magnitude pruning",
    "low_rank": "low-rank factorisation",
    "weight_sharing": "k-means weight sharing",
    "kmeans": "k-means weight sharing",
    "float16": "float16 weights",
    "distill": "distillation",
    "source": "the source model",
}


def setting_value(name: str, value: Any) -> str:
    """One setting's value as a reader wants it: 0.6 sparsity is "60 %", 30 s is "30 s"."""
    if name in ("sparsity", "energy"):
        return f"{float(value):.0%}"
    if name == "search_seconds":
        return "none" if not value else f"{int(value)} s"
    if name == "tolerance":
        return f"{float(value):g} F1 points"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def job_settings(kind: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) for each setting `kind` takes, in the form's order; a setting left empty shows the value the
    job used by default ("2 (default)"), one without a default is left out. A kind without settings gives []."""
    rows = []
    defaults = SETTING_DEFAULTS.get(kind, {})
    for name in PARAMS.get(kind, {}):
        if name in params:
            rows.append((SETTING_LABELS.get(name, name), setting_value(name, params[name])))
        elif name in defaults:
            rows.append((SETTING_LABELS.get(name, name), f"{setting_value(name, defaults[name])} (default)"))
    return rows


def _setting_words(name: str, value: Any) -> str:
    if name == "temperature":
        return f"T={float(value):g}"
    if name == "hidden_units":
        return f"{int(value)} hidden units"
    if name == "sparsity":
        return f"{float(value):.0%} sparsity"
    if name == "energy":
        return f"{float(value):.0%} retained energy"
    if name == "clusters":
        return f"{int(value)} clusters"
    if name == "alpha":
        return f"threshold α={float(value):g}"
    return f"{SETTING_LABELS.get(name, name).lower()} {setting_value(name, value)}"


def describe_trial(method: str, params: dict[str, Any]) -> str:
    """"distillation at T=2, 32 hidden units"; "int8 dynamic quantization" for a method without settings."""
    words = METHOD_WORDS.get(method, method.replace("_", " "))
    settings = ", ".join(_setting_words(name, value) for name, value in params.items())
    return f"{words} at {settings}" if settings else words


def trial_progress(method: str, params: dict[str, Any], *, index: int, total: int) -> str:
    """The search's progress line: "Trying distillation at T=2, 32 hidden units, 12 of 12"."""
    return f"Trying {describe_trial(method, params)}, {index} of {total}"


def elapsed_words(seconds: float) -> str:
    """"45 s", "3 min 05 s", "1 h 02 min"."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
