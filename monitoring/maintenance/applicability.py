"""Which maintenance jobs fit a version, and why the others don't. No Django here.

Everything is decided from what is known before queuing: the graph, whether the version has a recipe, and which
datasets the deployment has. The page lists it next to the "Queue job" button and the service refuses the rest,
so a job never fails late for a reason known early.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx

from monitoring.maintenance.compression.base import LINEAR, MLP, TREES, graph_family
from monitoring.maintenance.compression.methods import METHODS, applicability

# Job kind -> compression method key (monitoring/maintenance/compression/methods.py).
COMPRESSION_KINDS = {
    "compress_int8": "int8_dynamic",
    "compress_int8_static": "int8_static",
    "compress_prune": "prune",
    "compress_low_rank": "low_rank",
    "compress_kmeans": "kmeans",
    "compress_float16": "float16",
}


@dataclass(frozen=True)
class KindOption:
    kind: str
    applicable: bool
    reason: str  # empty when applicable


# Accepted parameters per kind: name -> (type, low, high). Bounds are inclusive.
PARAMS: dict[str, dict[str, tuple[type, float, float]]] = {
    "compress_prune": {"alpha": (float, 0.001, 0.999), "sparsity": (float, 0.01, 0.99)},
    "compress_low_rank": {"energy": (float, 0.5, 1.0)},
    "compress_kmeans": {"clusters": (int, 2, 256)},
    "distill": {"temperature": (float, 0.5, 20.0), "hidden_units": (int, 2, 256)},
    "retrain": {"search_seconds": (int, 0, 1800)},
    "find_smaller": {"tolerance": (float, 0.0, 20.0)},
}


class BadParams(ValueError):
    """The message is user-facing."""


def clean_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Keep the known parameters of `kind`, typed and within bounds; empty values are dropped."""
    allowed = PARAMS.get(kind, {})
    cleaned: dict[str, Any] = {}
    for name, value in (params or {}).items():
        if value in (None, ""):
            continue
        if name not in allowed:
            raise BadParams(f"The job does not take a parameter {name!r}; it takes {', '.join(allowed) or 'none'}.")
        cast, low, high = allowed[name]
        try:
            number = cast(value)
        except (TypeError, ValueError):
            raise BadParams(f"{name} must be a number, not {value!r}.") from None
        if not low <= number <= high:
            raise BadParams(f"{name} must be between {low:g} and {high:g}, not {number:g}.")
        cleaned[name] = number
    if kind == "compress_prune" and {"alpha", "sparsity"} <= cleaned.keys():
        raise BadParams("Give either alpha (threshold = alpha × max|W|) or a target sparsity, not both.")
    return cleaned


def kind_options(
    *, onnx_bytes: bytes, has_recipe: bool, has_reference: bool, has_evaluation_set: bool
) -> list[KindOption]:
    """Every job kind, in the order the form lists them, with whether it fits and why not."""
    model = onnx.load_model_from_string(onnx_bytes)
    family = graph_family(model)
    methods = {a.key: a for a in applicability(onnx_bytes, has_calibration=has_reference)}
    options = [
        KindOption(kind, methods[key].applicable, methods[key].reason) for kind, key in COMPRESSION_KINDS.items()
    ]

    if family not in (TREES, MLP):
        why = (
            "a linear model is already as small as a student network would be"
            if family == LINEAR else "only tree ensembles and MLPs are distilled"
        )
        options.append(KindOption("distill", False, f"Distillation does not apply to this model: {why}."))
    elif not has_reference:
        options.append(KindOption("distill", False, "Distillation needs the deployment's reference inputs to learn from; it has no reference dataset."))
    else:
        options.append(KindOption("distill", True, ""))

    if not has_recipe:
        options.append(KindOption("retrain", False, "This version has no training recipe (a skops scikit-learn file), so it cannot be retrained."))
    elif not has_reference:
        options.append(KindOption("retrain", False, "Retraining needs a reference dataset; this deployment has none."))
    else:
        options.append(KindOption("retrain", True, ""))

    shrinkers = [o for o in options if o.applicable and o.kind in (*COMPRESSION_KINDS, "distill")]
    if not has_evaluation_set:
        options.append(KindOption("find_smaller", False, "The search keeps candidates within an accuracy tolerance, measured on the labelled evaluation set; this deployment has none."))
    elif not shrinkers:
        options.append(KindOption("find_smaller", False, "No compression method or distillation applies to this model, so there is nothing to search."))
    else:
        options.append(KindOption("find_smaller", True, ""))
    return options


def method_for(kind: str) -> str | None:
    key = COMPRESSION_KINDS.get(kind)
    return key if key in METHODS else None
