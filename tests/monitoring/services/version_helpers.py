"""Helpers shared by the version tests: models with other signatures, a candidate, the blob store's files."""

from __future__ import annotations

from pathlib import Path

import onnx
from django.conf import settings
from onnx import TensorProto, helper
from sklearn.linear_model import LogisticRegression

from monitoring import services
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import ModelVersion
from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model


def blob_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT) / "blobs"
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def two_input_model() -> bytes:
    """A valid ONNX graph that takes two tensors (halves of the features) and concatenates them."""
    left = helper.make_tensor_value_info("left", TensorProto.FLOAT, [None, 15])
    right = helper.make_tensor_value_info("right", TensorProto.FLOAT, [None, 15])
    joined = helper.make_tensor_value_info("joined", TensorProto.FLOAT, [None, 30])
    graph = helper.make_graph([helper.make_node("Concat", ["left", "right"], ["joined"], axis=1)], "two_inputs", [left, right], [joined])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def five_feature_model() -> bytes:
    X, y, _, _ = breast_cancer_split()
    estimator = LogisticRegression(max_iter=2000).fit(X[:, :5], y)
    return estimator_to_onnx(estimator, feature_names=FEATURES[:5], class_labels=CLASSES)


def candidate(deployment, by) -> ModelVersion:
    onnx_bytes, recipe = trained_model(C=0.5)
    return services.version_register(deployment=deployment, data=onnx_bytes, recipe=recipe, by=by, notes="C=0.5")
