"""scikit-learn estimators as ONNX models and as recipes (skops, never pickle). No Django here.

Only writing happens here; a recipe is loaded (built back into an estimator) in the worker alone, by
workers/training.py, after monitoring/recipes.py has checked it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import skops.io as sio
from skl2onnx import to_onnx

# The default opset of onnxruntime builds we target; every op our converters emit exists in it.
TARGET_OPSET = 17


def estimator_to_onnx(estimator: Any, *, feature_names: list[str], class_labels: list[str]) -> bytes:
    """Convert a fitted classifier to ONNX bytes with plain outputs (label, probabilities).

    The feature names and class labels ride along as metadata, so an upload can be checked against a schema.
    """
    sample = np.zeros((1, len(feature_names)), dtype=np.float32)
    model = to_onnx(estimator, sample, options={"zipmap": False}, target_opset=TARGET_OPSET)
    for key, value in (("feature_names", feature_names), ("class_labels", [str(c) for c in class_labels])):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    return bytes(model.SerializeToString())


def recipe_dump(estimator: Any) -> bytes:
    return bytes(sio.dumps(estimator))
