"""Retraining a version from its recipe on new data. No Django here.

The recipe is the fitted estimator saved with skops; we take its hyperparameters
(`sklearn.base.clone` drops the fitted state) and fit them afresh on the rows we are given.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from workers.training import RecipeError, estimator_to_onnx, recipe_dump, recipe_load


class RetrainError(ValueError):
    """The data cannot train a classifier for this deployment. The message is user-facing."""


def _labels_like_recipe(template, y: np.ndarray) -> np.ndarray:
    """Keep the label type the recipe was fitted with (e.g. int64 classes), so the new ONNX label output matches.

    Labels are stored as strings; a recipe fitted on integers gets integers back when every label is one.
    """
    classes = getattr(template, "classes_", None)
    if classes is not None and np.asarray(classes).dtype.kind in "iu":
        try:
            return y.astype(np.int64)
        except ValueError:
            return y
    return y


def retrain(
    *, recipe: bytes, X: np.ndarray, y: np.ndarray, feature_names: list[str], class_labels: list[str]
) -> tuple[bytes, bytes, dict]:
    """Fit the recipe's estimator on (X, y); return (onnx bytes, new recipe, report).

    Raises RecipeError for a recipe that cannot be loaded safely and RetrainError for unusable data.
    """
    template = recipe_load(recipe)
    if not hasattr(template, "fit"):
        raise RecipeError(f"The recipe holds a {type(template).__name__}, not a scikit-learn estimator.")
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(str)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise RetrainError(
            f"The training data has shape {list(X.shape)}; the model needs n_rows × {len(feature_names)}."
        )
    if len(X) != len(y):
        raise RetrainError(f"The training data has {len(X)} rows but {len(y)} labels.")
    unknown = sorted(set(y) - {str(c) for c in class_labels})
    if unknown:
        raise RetrainError(f"The training labels include classes the deployment does not know: {unknown[:5]}.")
    present = sorted(set(y))
    if len(present) < 2:
        raise RetrainError(f"Retraining needs at least two classes in the labelled data; it has {present or 'none'}.")

    estimator = clone(template)
    with warnings.catch_warnings():
        # An iteration cap reached is the recipe's own choice, not a failure of the retrain.
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, _labels_like_recipe(template, y))
    # The ONNX metadata must list classes in the estimator's order: probability columns follow it.
    classes = [str(c) for c in estimator.classes_]
    onnx_bytes = estimator_to_onnx(estimator, feature_names=list(feature_names), class_labels=classes)
    report = {
        "estimator": type(estimator).__name__,
        "n_rows": int(len(X)),
        "class_counts": {label: int(np.sum(y == label)) for label in present},
        "train_accuracy": round(float(np.mean(np.asarray(estimator.predict(X)).astype(str) == y)), 6),
    }
    return onnx_bytes, recipe_dump(estimator), report
