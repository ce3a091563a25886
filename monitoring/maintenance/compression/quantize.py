"""Int8 dynamic quantization of an ONNX classifier. No Django here.

Weights of MatMul-style nodes are stored as int8 and activations are quantized on the fly,
so the file shrinks roughly 4× where the weights are and no calibration data is needed.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from monitoring.maintenance.compression.base import (
    CompressionReport,
    NotApplicable,
    describe_ops,
    ensure_smaller,
    graph_family,
    tidy,
)

__all__ = ["LABEL", "METHOD", "NotApplicable", "check", "quantizable_nodes", "quantize_int8_dynamic"]

METHOD = "int8_dynamic"
LABEL = "Int8 dynamic quantization"

# The ops onnxruntime's dynamic quantizer rewrites (its IntegerOpsRegistry), less Transpose, which has no weights.
# Gemm is not among them, and neither are the ai.onnx.ml ops (LinearClassifier, TreeEnsembleClassifier, SVM…).
QUANTIZABLE_OPS = frozenset({"MatMul", "Conv", "Gather", "Attention", "LSTM", "EmbedLayerNormalization"})


def _drop_preprocessing_hint(record: logging.LogRecord) -> bool:
    # The quantizer suggests shape-inference pre-processing on the root logger at every call; for these
    # small classifier graphs it changes nothing, and a warning per job would teach operators to ignore warnings.
    return not record.getMessage().startswith("Please consider to run pre-processing")


logging.getLogger().addFilter(_drop_preprocessing_hint)


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names (or op types) of the nodes that have constant weights the dynamic quantizer can store as int8."""
    weights = {init.name for init in model.graph.initializer}
    return [
        node.name or node.op_type
        for node in model.graph.node
        if node.op_type in QUANTIZABLE_OPS and node.domain in ("", "ai.onnx") and any(i in weights for i in node.input)
    ]


def check(model: onnx.ModelProto, *, label: str = LABEL) -> None:
    """Raise NotApplicable when the graph has no weights the quantizer would touch; `label` names the method
    in the message (static quantization shares this check)."""
    if quantizable_nodes(model):
        return
    family = graph_family(model)
    kind = {"linear": " Linear classifiers", "tree_ensemble": " Tree ensembles"}.get(family, " Linear classifiers and tree ensembles")
    raise NotApplicable(
        f"{label} does not apply to this model: it has no MatMul, Conv or Gather weights "
        f"to quantize (its operators are {describe_ops(model)}).{kind} are "
        "compiled by skl2onnx to single ONNX-ML operators that keep float weights as attributes, which "
        "onnxruntime's quantizers do not touch."
    )


def quantize_int8_dynamic(onnx_bytes: bytes, calibration: np.ndarray | None = None) -> tuple[bytes, CompressionReport]:
    """Quantize weights to int8; return the new model and a report with sizes before and after.

    Raises NotApplicable when the graph has no weights the quantizer would touch, or when the
    result would be no smaller, rather than producing a copy that only looks like a new model.
    """
    model = onnx.load_model_from_string(onnx_bytes)
    check(model)
    nodes = quantizable_nodes(model)
    with tempfile.TemporaryDirectory(prefix="wk-quantize-") as folder:
        source, target = Path(folder) / "model.onnx", Path(folder) / "model.int8.onnx"
        source.write_bytes(onnx_bytes)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        quantized = tidy(target.read_bytes())
    ensure_smaller(LABEL, onnx_bytes, quantized)
    return quantized, CompressionReport(
        METHOD, len(onnx_bytes), len(quantized), {"weight_type": "QInt8", "quantized_nodes": len(nodes)}
    )
