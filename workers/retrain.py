"""Retraining a version from its recipe on new data. No Django here.

The recipe is the fitted estimator saved with skops. Where the estimator can continue from what it learnt,
it does: `partial_fit` (MLP, SGD) runs a few more epochs on the new rows, `warm_start` starts the optimiser from
the fitted coefficients (logistic regression) or grows a fifth more trees on the new rows (forests). A pipeline's
fitted preprocessing is kept, so the continued estimator sees features scaled as before. Anything else is refitted
from its hyperparameters (`sklearn.base.clone` drops the fitted state). With a time budget, a small random search
over the estimator's main hyperparameters picks the refit's settings by 3-fold cross-validation.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import ParameterSampler, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from monitoring.maintenance.export import estimator_to_onnx, recipe_dump
from workers.training import RecipeError, recipe_load


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


# partial_fit epochs when fine-tuning: enough to follow new data, few enough not to forget the old.
FINE_TUNE_EPOCHS = 20
# The search's grids, by final estimator: a handful of values each around the usual defaults.
SEARCH_SPACES: dict[str, dict[str, list]] = {
    "MLPClassifier": {"alpha": [1e-5, 1e-4, 1e-3, 1e-2], "hidden_layer_sizes": [(32,), (64,), (128,)]},
    "LogisticRegression": {"C": [0.01, 0.05, 0.1, 0.5, 1.0, 5.0]},
    "RandomForestClassifier": {"n_estimators": [25, 50, 100], "max_depth": [3, 4, 6, None]},
}
MAX_TRIALS = 12


def _final(estimator):
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _continue(template, X: np.ndarray, y: np.ndarray) -> tuple[object, str]:
    """Continue training the fitted template on (X, y) where it can; else refit a clone. Returns (estimator, how)."""
    final = _final(template)
    classes = {str(c) for c in getattr(final, "classes_", [])}
    if isinstance(template, Pipeline):
        Xt = template[:-1].transform(X)
    else:
        Xt = X
    if hasattr(final, "partial_fit") and {str(v) for v in y} <= classes:
        estimator = copy.deepcopy(template)
        for _ in range(FINE_TUNE_EPOCHS):
            _final(estimator).partial_fit(Xt, y)
        return estimator, "partial_fit"
    params = final.get_params()
    if "warm_start" in params and {str(v) for v in y} == classes:
        estimator = copy.deepcopy(template)
        step = _final(estimator)
        step.set_params(warm_start=True)
        if "n_estimators" in params:
            step.set_params(n_estimators=params["n_estimators"] + max(1, params["n_estimators"] // 5))
        step.fit(Xt, y)
        return estimator, "warm_start"
    return clone(template).fit(X, y), "refit"


def _search(template, X: np.ndarray, y: np.ndarray, *, seconds: float, tick: Callable[[str], None]) -> tuple[dict, float]:
    """Random search within `seconds`; returns (best params or {}, its mean CV accuracy)."""
    final = _final(template)
    space = SEARCH_SPACES.get(type(final).__name__)
    if not space or seconds <= 0:
        return {}, float("nan")
    prefix = f"{template.steps[-1][0]}__" if isinstance(template, Pipeline) else ""
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    deadline = time.monotonic() + seconds
    best, best_score = {}, -1.0
    for i, params in enumerate(ParameterSampler(space, n_iter=MAX_TRIALS, random_state=0)):
        if time.monotonic() > deadline:
            break
        settings = ", ".join(f"{name.removeprefix(prefix)}={value:g}" if isinstance(value, float) else
                             f"{name.removeprefix(prefix)}={value}" for name, value in params.items())
        tick(f"Hyperparameter search, trial {i + 1} of at most {MAX_TRIALS}: {settings}")
        candidate = clone(template).set_params(**{prefix + k: v for k, v in params.items()})
        score = float(np.mean(cross_val_score(candidate, X, y, cv=folds)))
        if score > best_score:
            best, best_score = params, score
    return best, best_score


def retrain(
    *, recipe: bytes, X: np.ndarray, y: np.ndarray, feature_names: list[str], class_labels: list[str],
    search_seconds: float = 0, tick: Callable[[str], None] = lambda message: None,
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

    y_fit = _labels_like_recipe(template, y)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # An iteration cap reached is the recipe's own choice, not a failure of the retrain.
        warnings.simplefilter("ignore", ConvergenceWarning)
        best, best_score = _search(template, X, y_fit, seconds=search_seconds, tick=tick)
        if best:
            prefix = f"{template.steps[-1][0]}__" if isinstance(template, Pipeline) else ""
            estimator = clone(template).set_params(**{prefix + k: v for k, v in best.items()}).fit(X, y_fit)
            how = "refit with searched hyperparameters"
        else:
            estimator, how = _continue(template, X, y_fit)
    # The ONNX metadata must list classes in the estimator's order: probability columns follow it.
    classes = [str(c) for c in estimator.classes_]
    onnx_bytes = estimator_to_onnx(estimator, feature_names=list(feature_names), class_labels=classes)
    report = {
        "estimator": type(estimator).__name__,
        "how": how,
        "search": {"best": {k: str(v) for k, v in best.items()}, "cv_accuracy": round(best_score, 4)} if best else None,
        "n_rows": int(len(X)),
        "class_counts": {label: int(np.sum(y == label)) for label in present},
        "train_accuracy": round(float(np.mean(np.asarray(estimator.predict(X)).astype(str) == y)), 6),
    }
    return onnx_bytes, recipe_dump(estimator), report
