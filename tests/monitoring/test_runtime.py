"""onnxruntime: validating uploads, predicting, timing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from monitoring.runtime import InvalidModelError, ModelRunner, SessionCache, inspect_model, measure_latency
from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model


def _model(graph) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the installed onnxruntime reads; onnx's default may be newer
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _two_input_model() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "two_inputs",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 30]) for name in ("a", "b")],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 30])],
    )
    return _model(graph)


def _runner(data: bytes) -> ModelRunner:
    s = inspect_model(data)
    return ModelRunner(
        data, label_output=s.label_output, probability_output=s.probability_output, class_labels=s.class_labels
    )


def test_it_reads_the_signature_of_a_real_classifier():
    data, _ = trained_model()

    signature = inspect_model(data, expected_features=30)

    assert signature.input_shape == [None, 30] and signature.n_features == 30
    assert signature.feature_names == FEATURES and signature.class_labels == CLASSES
    assert signature.label_output == "label" and signature.probability_output == "probabilities"
    assert signature.opset == 17


def test_it_rejects_a_file_that_is_not_onnx():
    with pytest.raises(InvalidModelError, match="not a valid ONNX model"):
        inspect_model(b"feature_1,feature_2\n1.0,2.0\n")


def test_it_rejects_an_empty_file():
    with pytest.raises(InvalidModelError, match="empty"):
        inspect_model(b"")


def test_it_rejects_a_model_with_the_wrong_number_of_features():
    data, _ = trained_model()

    with pytest.raises(InvalidModelError, match="takes 30 features but the deployment's schema has 12"):
        inspect_model(data, expected_features=12)


def test_it_rejects_a_model_with_two_inputs():
    with pytest.raises(InvalidModelError, match="exactly one input tensor; it takes 2"):
        inspect_model(_two_input_model())


def test_it_rejects_a_model_without_a_label_output():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "regressor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 30])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 30])],
    )

    with pytest.raises(InvalidModelError, match="no label output"):
        inspect_model(_model(graph))


def test_the_runner_predicts_what_scikit_learn_would():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, y_train, X_test, _ = breast_cancer_split()
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(X_train, y_train)
    data, _ = trained_model()

    predictions = _runner(data).predict(X_test, batch_size=64)  # several batches, one answer

    assert np.mean(predictions.labels == estimator.predict(X_test).astype(str)) > 0.99
    assert predictions.probabilities.shape == (len(X_test), 2)
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_latency_percentiles_are_ordered_and_throughput_counts_rows():
    data, _ = trained_model()
    X = breast_cancer_split()[2]

    report = measure_latency(_runner(data), X, batch_size=16, warmup=5, calls=50)

    assert 0 < report.p50_ms <= report.p95_ms <= report.p99_ms
    assert report.n_calls == 50 and report.batch_size == 16 and report.throughput_rows_per_s > 0


def test_the_session_cache_loads_once_per_hash_and_evicts_the_oldest():
    cache, loads = SessionCache(capacity=2), []

    def loader(key):
        return lambda: loads.append(key) or key

    for key in ["a", "b", "a", "c", "b"]:
        cache.get(key, loader(key))

    assert loads == ["a", "b", "c", "b"]  # "a" was used again, so "b" was the oldest when "c" arrived


def test_a_string_label_model_gives_class_indices_and_float32_probabilities_without_changing_its_answers():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from monitoring.maintenance.export import estimator_to_onnx

    X, y = load_digits(return_X_y=True)
    classes = [str(i) for i in range(10)]
    estimator = LogisticRegression(max_iter=300).fit(X, y.astype(str))  # string classes: a tensor(string) output
    data = estimator_to_onnx(estimator, feature_names=[f"px{i}" for i in range(64)], class_labels=classes)
    runner = _runner(data)
    X = X.astype(np.float32)

    wide, narrow = runner.predict(X, batch_size=500), runner.predict(X, batch_size=500, probability_dtype=np.float32)

    assert wide.raw_labels.dtype == object
    assert narrow.label_indices(classes).tolist() == [classes.index(label) for label in wide.labels]
    assert wide.labels.tolist() == estimator.predict(X).tolist()
    assert narrow.probabilities.dtype == np.float32 and wide.probabilities.dtype == np.float64
    np.testing.assert_array_equal(narrow.probabilities, wide.probabilities)  # the same values, only narrower
