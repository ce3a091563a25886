"""scikit-learn estimators as ONNX models and as safe recipes.

A recipe is the estimator serialised with skops, never pickle: loading it only
rebuilds types we trust, so a recipe from a user cannot run code.
"""

from __future__ import annotations

import json

import numpy as np
import skops.io as sio
from skl2onnx import to_onnx

# The default opset of onnxruntime builds we target; every op our converters emit exists in it.
TARGET_OPSET = 17


class RecipeError(ValueError):
    """A recipe that cannot be loaded safely. The message is user-facing."""


def estimator_to_onnx(estimator, *, feature_names: list[str], class_labels: list[str]) -> bytes:
    """Convert a fitted classifier to ONNX bytes with plain outputs (label, probabilities).

    The feature names and class labels ride along as metadata, so an upload can be checked against a schema.
    """
    sample = np.zeros((1, len(feature_names)), dtype=np.float32)
    model = to_onnx(estimator, sample, options={"zipmap": False}, target_opset=TARGET_OPSET)
    for key, value in (("feature_names", feature_names), ("class_labels", [str(c) for c in class_labels])):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    return model.SerializeToString()


def recipe_dump(estimator) -> bytes:
    return sio.dumps(estimator)


def recipe_load(data: bytes):
    """Load a recipe, refusing any type outside scikit-learn, numpy and scipy."""
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise RecipeError(f"The recipe is not a skops file: {exc}") from None
    unsafe = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy."))]
    if unsafe:
        raise RecipeError(f"The recipe contains types that are not trusted: {', '.join(unsafe[:5])}")
    return sio.loads(data, trusted=untrusted)
