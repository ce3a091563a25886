"""Int8 dynamic quantization on real ONNX models."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.maintenance.compression.quantize import NotApplicable, quantize_int8_dynamic
from monitoring.runtime import ModelRunner, inspect_model
from tests.conftest import trained_model
from tests.workers.conftest import DIGITS, PIXELS, digits_mlp, digits_split


def _runner(data: bytes) -> ModelRunner:
    signature = inspect_model(data)
    return ModelRunner(
        data, label_output=signature.label_output, probability_output=signature.probability_output,
        class_labels=signature.class_labels,
    )


def test_it_makes_an_mlp_smaller_and_keeps_its_signature_and_its_answers():
    original, _ = digits_mlp()

    quantized, report = quantize_int8_dynamic(original)

    assert report.size_before == len(original) and report.size_after == len(quantized)
    assert len(quantized) < 0.6 * len(original)
    assert report.details["quantized_nodes"] == 2  # the MLP's two MatMul layers
    signature = inspect_model(quantized, expected_features=64)
    assert signature.feature_names == PIXELS and signature.class_labels == DIGITS
    _, _, X_test, y_test = digits_split()
    before, after = _runner(original).predict(X_test), _runner(quantized).predict(X_test)
    assert np.mean(before.labels == after.labels) > 0.97
    assert np.mean(after.labels == y_test) > 0.9


def test_it_refuses_a_linear_classifier_it_cannot_shrink():
    logistic_regression, _ = trained_model()

    with pytest.raises(NotApplicable) as caught:
        quantize_int8_dynamic(logistic_regression)

    assert "does not apply" in caught.value.reason and "LinearClassifier" in caught.value.reason
