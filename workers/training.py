"""Loading a recipe: a scikit-learn estimator serialised with skops, never pickle (monitoring/maintenance/export.py
writes one). Loading one happens only here, in the worker:
monitoring/recipes.py first checks the schema against an explicit allow-list of estimator types (and the zip
against size caps) without building anything, then skops builds exactly those types, and the trees' node
indices are checked before scikit-learn's C code walks them.
"""

from __future__ import annotations

import logging

import numpy as np
import skops.io as sio

from monitoring.recipes import RecipeError, recipe_check

logger = logging.getLogger(__name__)

__all__ = ["RecipeError", "recipe_load"]


def recipe_load(data: bytes):
    """Build the estimator a recipe holds, refusing any type outside the allow-list (monitoring/recipes.py).

    Raises RecipeError with a message for the user; what skops or scikit-learn said goes to the log.
    """
    summary = recipe_check(data)
    try:
        estimator = sio.loads(data, trusted=list(summary.types))
    except Exception as exc:
        logger.warning("recipe failed to load: %s: %s", type(exc).__name__, exc)
        raise RecipeError(
            f"The training recipe ({summary.estimator.rsplit('.', 1)[-1]}) cannot be loaded: it is inconsistent "
            "or was saved by an incompatible scikit-learn. Save the fitted estimator again with skops."
        ) from None
    try:
        _check_trees(estimator)
    except (AttributeError, TypeError, ValueError) as exc:  # a pipeline or forest whose parts are not what they claim
        if isinstance(exc, RecipeError):
            raise
        logger.warning("recipe has malformed parts: %s: %s", type(exc).__name__, exc)
        raise RecipeError("The training recipe's estimator is malformed: its steps or trees cannot be read.") from None
    return estimator


def _check_trees(estimator) -> None:
    """Refuse a tree whose node indices point outside it: scikit-learn's C code follows them unchecked."""
    for tree in _trees(estimator):
        n = int(tree.node_count)
        left, right, feature = tree.children_left, tree.children_right, tree.feature
        if n < 1 or len(left) != n or len(right) != n or len(feature) != n:
            raise RecipeError("The training recipe holds a decision tree whose node count does not match its nodes.")
        index = np.arange(n)
        leaf = left == -1
        # scikit-learn numbers children after their parent, so these bounds also rule out cycles.
        inner_ok = (left > index) & (left < n) & (right > index) & (right < n)
        inner_ok &= (feature >= 0) & (feature < int(tree.n_features))
        if not np.all(np.where(leaf, right == -1, inner_ok)):
            raise RecipeError("The training recipe holds a decision tree with node indices outside the tree.")


def _trees(estimator) -> list:
    found, pending = [], [estimator]
    while pending:
        item = pending.pop()
        steps = getattr(item, "steps", None)
        if isinstance(steps, list):
            pending.extend(step for _, step in steps)
        pending.extend(getattr(item, "estimators_", None) or [])
        tree = getattr(item, "tree_", None)
        if tree is not None:
            found.append(tree)
    return found
