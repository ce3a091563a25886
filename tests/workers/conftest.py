"""Fixtures for the workers' tests: a second, quantizable deployment and production traffic."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta
from functools import cache

import numpy as np
import pytest
from django.utils import timezone
from sklearn.datasets import load_digits, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from monitoring import services
from monitoring.maintenance.export import estimator_to_onnx, recipe_dump
from monitoring.models import Deployment
from tests.builders import make_deployment
from tests.conftest import breast_cancer_split

PIXELS = [f"px{i}" for i in range(64)]
DIGITS = [str(i) for i in range(10)]


@cache
def digits_split():
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(X))
    X, y = X[order].astype(np.float32), y[order].astype(str)
    return X[:1200], y[:1200], X[1200:], y[1200:]


@cache
def digits_mlp() -> tuple[bytes, bytes]:
    """(onnx bytes, recipe) of a 64-unit MLP on load_digits: MatMul weights, so int8 quantization applies."""
    X_train, y_train, _, _ = digits_split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 200 epochs is accurate enough for a fixture
        estimator = MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=0).fit(X_train, y_train)
    return estimator_to_onnx(estimator, feature_names=PIXELS, class_labels=DIGITS), recipe_dump(estimator)


WINE_FEATURES = [f"w{i}" for i in range(13)]
WINE_CLASSES = ["0", "1", "2"]


@cache
def wine_split():
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X.astype(np.float32), y.astype(str), test_size=0.4, random_state=37, stratify=y
    )
    return X_train, y_train, X_test, y_test


@cache
def wine_forest() -> bytes:
    """A 50-tree forest on load_wine, as in the demo: a TreeEnsembleClassifier, which only distillation shrinks."""
    X_train, y_train, _, _ = wine_split()
    estimator = RandomForestClassifier(n_estimators=50, max_depth=4, random_state=0).fit(X_train, y_train)
    return estimator_to_onnx(estimator, feature_names=WINE_FEATURES, class_labels=WINE_CLASSES)


@pytest.fixture
def forest_deployment(team, approver) -> Deployment:
    X_train, y_train, X_test, y_test = wine_split()
    return make_deployment(
        team=team, by=approver, name="Wine", slug="wine", feature_names=WINE_FEATURES, class_labels=WINE_CLASSES,
        model=wine_forest(), train=(X_train, y_train), holdout=(X_test, y_test),
    )


@pytest.fixture
def mlp_deployment(team, approver) -> Deployment:
    onnx_bytes, recipe = digits_mlp()
    X_train, y_train, X_test, y_test = digits_split()
    return make_deployment(
        team=team, by=approver, name="Digits", slug="digits", feature_names=PIXELS, class_labels=DIGITS,
        model=onnx_bytes, recipe=recipe, train=(X_train, y_train), holdout=(X_test, y_test),
    )


def ingest_traffic(
    deployment: Deployment,
    X: np.ndarray,
    *,
    predicted: np.ndarray,
    start: datetime,
    labels: np.ndarray | None = None,
    prefix: str = "r",
    spacing: timedelta = timedelta(minutes=1),
) -> list[str]:
    """Store one prediction per row of X, `spacing` apart from `start`, through the ingestion service."""
    ids = [f"{prefix}-{i}" for i in range(len(X))]
    services.predictions_ingest(
        deployment=deployment,
        rows=[
            {"id": ids[i], "timestamp": start + i * spacing, "features": [float(v) for v in X[i]],
             "predicted_label": str(predicted[i])}
            for i in range(len(X))
        ],
    )
    if labels is not None:
        services.labels_ingest(
            deployment=deployment, rows=[{"id": ids[i], "label": str(labels[i])} for i in range(len(X))]
        )
    return ids


def recent_start(n: int, spacing: timedelta = timedelta(minutes=1)) -> datetime:
    """A start time such that n rows `spacing` apart all fall in the last few hours, ending a minute ago."""
    return timezone.now() - n * spacing - timedelta(minutes=1)


def holdout():
    """The breast-cancer holdout (features, labels as strings)."""
    _, _, X_test, y_test = breast_cancer_split()
    return X_test, y_test.astype(str)
