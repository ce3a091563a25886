"""Float16 weights, kept only where the converted model loads and gives the same answers. No Django here.

onnxconverter-common's converter rewrites every float tensor; on graphs with Cast nodes (skl2onnx emits them
around ArgMax and label lookups) or ONNX-ML operators it can produce a model that does not load or that answers
differently. So the result is loaded and checked against the original on calibration rows before it is kept.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnxconverter_common import float16

from monitoring.maintenance.compression.base import (
    CompressionReport,
    NotApplicable,
    ensure_smaller,
    require_dense,
    runner,
)

METHOD = "float16"
LABEL = "Float16 weights"
# Kept when at least this share of rows keeps its label and no probability moves by more than MAX_PROBA_DELTA.
MIN_AGREEMENT = 0.99
MAX_PROBA_DELTA = 0.02


def _convert(model: onnx.ModelProto) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter warns about every value it clips to the float16 range
        return float16.convert_float_to_float16(model, keep_io_types=True).SerializeToString()


def check(model: onnx.ModelProto) -> None:
    """Dense weights, and a converted graph that onnxruntime loads: both known before any job is queued
    (converting and loading a small classifier takes milliseconds)."""
    require_dense(LABEL, model)
    try:
        ort.InferenceSession(_convert(model), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's load errors share no base class worth naming
        raise NotApplicable(
            f"{LABEL} does not apply to this model: the float16 conversion (onnxconverter-common) produces a "
            "graph onnxruntime refuses to load, as it does for skl2onnx graphs whose Cast nodes keep float32 "
            f"inputs ({str(exc).splitlines()[0][:220]})."
        ) from None


def to_float16(onnx_bytes: bytes, calibration: np.ndarray | None = None) -> tuple[bytes, CompressionReport]:
    model = onnx.load_model_from_string(onnx_bytes)
    check(model)
    if calibration is None or len(calibration) == 0:
        raise NotApplicable(f"{LABEL} needs reference rows to check the converted model's answers.")
    converted = _convert(model)
    after = runner(converted).predict(calibration)
    before = runner(onnx_bytes).predict(calibration)
    agreement = float(np.mean(before.labels == after.labels))
    delta = (
        float(np.max(np.abs(before.probabilities - after.probabilities)))
        if before.probabilities is not None and after.probabilities is not None else 0.0
    )
    if agreement < MIN_AGREEMENT or delta > MAX_PROBA_DELTA:
        raise NotApplicable(
            f"{LABEL} does not apply: the converted model answers differently ({agreement:.1%} of labels kept, "
            f"probabilities move by up to {delta:.3f})."
        )
    ensure_smaller(LABEL, onnx_bytes, converted)
    return converted, CompressionReport(
        METHOD, len(onnx_bytes), len(converted), {"agreement": round(agreement, 4), "max_proba_delta": round(delta, 5)}
    )
