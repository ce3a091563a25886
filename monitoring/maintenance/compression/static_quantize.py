"""Int8 static quantization in QDQ format, calibrated on reference data. No Django here.

Unlike dynamic quantization, activation ranges are fixed ahead of time from real rows, so no range is computed
per call: the graph carries QuantizeLinear/DequantizeLinear pairs with constant scales.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from monitoring.maintenance.compression.base import CompressionReport, NotApplicable, ensure_smaller, tidy
from monitoring.maintenance.compression.quantize import check as check_weights
from monitoring.maintenance.compression.quantize import quantizable_nodes

METHOD = "int8_static"
LABEL = "Int8 static quantization (QDQ)"
# Calibration sees at most this many rows, in batches of CALIBRATION_BATCH: MinMax ranges settle long before,
# and the calibrator keeps every intermediate output of every batch in memory.
CALIBRATION_ROWS = 512
CALIBRATION_BATCH = 64


class _Rows(CalibrationDataReader):
    def __init__(self, input_name: str, X: np.ndarray):
        self._batches = iter(
            {input_name: X[i : i + CALIBRATION_BATCH]} for i in range(0, len(X), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def check(model: onnx.ModelProto) -> None:
    check_weights(model, label=LABEL)


def quantize_int8_static(onnx_bytes: bytes, calibration: np.ndarray | None = None) -> tuple[bytes, CompressionReport]:
    model = onnx.load_model_from_string(onnx_bytes)
    check(model)
    if calibration is None or len(calibration) == 0:
        raise NotApplicable(f"{LABEL} needs calibration rows: give the deployment a reference dataset first.")
    X = np.ascontiguousarray(calibration[:CALIBRATION_ROWS], dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="wk-qdq-") as folder:
        source, target = Path(folder) / "model.onnx", Path(folder) / "model.qdq.onnx"
        source.write_bytes(onnx_bytes)
        quantize_static(
            source, target, _Rows(model.graph.input[0].name, X),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            # Only the weight-bearing ops: quantizing Softmax/ArgMax tails would cost accuracy and save nothing.
            op_types_to_quantize=["MatMul", "Conv", "Gemm"],
        )
        quantized = tidy(target.read_bytes())
    ensure_smaller(LABEL, onnx_bytes, quantized)
    return quantized, CompressionReport(
        METHOD, len(onnx_bytes), len(quantized),
        {"format": "QDQ", "calibration_rows": int(len(X)), "quantized_nodes": len(quantizable_nodes(model))},
    )
