"""Retraining from a skops recipe: same hyperparameters, new data, a model that fits the schema."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio

from monitoring.runtime import ModelRunner, inspect_model
from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model
from workers.retrain import RetrainError, retrain
from workers.training import RecipeError, recipe_load


def test_it_fits_the_recipes_estimator_on_new_data_and_converts_it():
    _, recipe = trained_model(C=0.05)
    _, _, X_new, y_new = breast_cancer_split()

    onnx_bytes, new_recipe, report = retrain(
        recipe=recipe, X=X_new, y=y_new.astype(str), feature_names=FEATURES, class_labels=CLASSES
    )

    signature = inspect_model(onnx_bytes, expected_features=30)
    assert signature.feature_names == FEATURES and signature.class_labels == CLASSES
    estimator = recipe_load(new_recipe)
    assert estimator[-1].C == 0.05  # the recipe's hyperparameters, refitted
    assert report["n_rows"] == len(X_new) and report["train_accuracy"] > 0.9
    runner = ModelRunner(onnx_bytes, label_output=signature.label_output, class_labels=signature.class_labels)
    assert np.mean(runner.predict(X_new).labels == y_new.astype(str)) > 0.9


def test_it_refuses_a_recipe_with_untrusted_types():
    untrusted = sio.dumps({"callback": print})

    with pytest.raises(RecipeError):
        retrain(
            recipe=untrusted, X=np.zeros((4, 30)), y=np.array(["0", "1"] * 2), feature_names=FEATURES,
            class_labels=CLASSES,
        )


def test_it_refuses_data_with_a_single_class_or_unknown_labels():
    _, recipe = trained_model()
    X = np.zeros((10, 30))

    with pytest.raises(RetrainError, match="at least two classes"):
        retrain(recipe=recipe, X=X, y=np.array(["1"] * 10), feature_names=FEATURES, class_labels=CLASSES)
    with pytest.raises(RetrainError, match="does not know"):
        retrain(recipe=recipe, X=X, y=np.array(["0", "7"] * 5), feature_names=FEATURES, class_labels=CLASSES)
