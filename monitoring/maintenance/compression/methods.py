"""The compression methods by key, and which of them apply to a model. No Django here.

A method is a pure function (onnx bytes, calibration rows, **params) -> (onnx bytes, CompressionReport) plus a
`check(model)` that raises NotApplicable from the graph alone, so the UI can say why before anything is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from monitoring.maintenance.compression import float16, low_rank, prune, quantize, static_quantize, weight_sharing
from monitoring.maintenance.compression.base import CompressionReport, NotApplicable


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    run: Callable[..., tuple[bytes, CompressionReport]]
    check: Callable[[onnx.ModelProto], None]
    needs_calibration: bool
    # Settings the "find a smaller model" search tries, mildest first.
    search_grid: tuple[dict, ...] = ({},)


METHODS: dict[str, Method] = {
    m.key: m
    for m in (
        Method(quantize.METHOD, quantize.LABEL, quantize.quantize_int8_dynamic, quantize.check, False),
        Method(static_quantize.METHOD, static_quantize.LABEL, static_quantize.quantize_int8_static,
               static_quantize.check, True),
        Method(prune.METHOD, prune.LABEL, prune.prune, prune.check, False,
               ({"sparsity": 0.5}, {"sparsity": 0.7}, {"sparsity": 0.85})),
        Method(low_rank.METHOD, low_rank.LABEL, low_rank.factorise, low_rank.check, False,
               ({"energy": 0.99}, {"energy": 0.95}, {"energy": 0.9})),
        Method(weight_sharing.METHOD, weight_sharing.LABEL, weight_sharing.share_weights, weight_sharing.check,
               False, ({"clusters": 64}, {"clusters": 16})),
        Method(float16.METHOD, float16.LABEL, float16.to_float16, float16.check, True),
    )
}


@dataclass(frozen=True)
class Applicability:
    key: str
    label: str
    applicable: bool
    reason: str  # why not, in plain words; empty when it applies


def applicability(onnx_bytes: bytes, *, has_calibration: bool) -> list[Applicability]:
    """Every method, with whether it applies to this graph and, when not, why."""
    model = onnx.load_model_from_string(onnx_bytes)
    found = []
    for method in METHODS.values():
        try:
            method.check(model)
            if method.needs_calibration and not has_calibration:
                raise NotApplicable(f"{method.label} needs reference rows: give the deployment a reference dataset.")
        except NotApplicable as exc:
            found.append(Applicability(method.key, method.label, False, exc.reason))
        else:
            found.append(Applicability(method.key, method.label, True, ""))
    return found


def compress(key: str, onnx_bytes: bytes, calibration: np.ndarray | None = None, **params):
    method = METHODS.get(key)
    if method is None:
        raise NotApplicable(f"There is no compression method {key!r}; choose one of {', '.join(METHODS)}.")
    return method.run(onnx_bytes, calibration, **params)
