"""Every compression method on real skl2onnx models: the file shrinks, the answers stay, and a method that does
not fit says why."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from monitoring.maintenance.applicability import BadParams, clean_params, kind_options
from monitoring.maintenance.compression import low_rank, prune
from monitoring.maintenance.compression.base import LINEAR, MLP, TREES, NotApplicable, graph_family, runner
from monitoring.maintenance.compression.methods import METHODS, applicability, compress
from monitoring.runtime import inspect_model
from tests.conftest import trained_model
from tests.workers.conftest import DIGITS, PIXELS, digits_mlp, digits_split, wine_forest, wine_split
from workers.distill import distill, kl_divergence, soften


def _accuracy(data: bytes, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(runner(data).predict(X).labels == y))


@pytest.mark.parametrize(
    ("key", "params", "max_ratio"),
    [
        ("int8_dynamic", {}, 0.45),
        ("int8_static", {}, 0.5),
        ("kmeans", {"clusters": 64}, 0.4),
    ],
)
def test_it_shrinks_the_digits_mlp_and_keeps_its_accuracy(key, params, max_ratio):
    original, _ = digits_mlp()
    X_train, _, X_test, y_test = digits_split()

    compressed, report = compress(key, original, X_train, **params)

    assert report.size_before == len(original) and report.size_after == len(compressed)
    assert len(compressed) <= max_ratio * len(original)
    signature = inspect_model(compressed, expected_features=64)
    assert signature.feature_names == PIXELS and signature.class_labels == DIGITS
    assert _accuracy(compressed, X_test, y_test) >= _accuracy(original, X_test, y_test) - 0.01


def test_pruning_stores_the_kept_weights_sparsely_so_the_file_shrinks_with_the_sparsity():
    original, _ = digits_mlp()
    _X_train, _, X_test, _ = digits_split()

    half, half_report = prune.prune(original, sparsity=0.5)
    most, _most_report = prune.prune(original, sparsity=0.85)

    assert half_report.details["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert len(most) < len(half) < len(original)
    assert len(most) < 0.4 * len(original)  # 15 % of the weights at 6 bytes each, plus the graph
    # The densified weights are exactly the kept ones: the model answers like the original with those zeros.
    model = onnx.load_model_from_string(original)
    W = onnx.numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "coefficient"))
    assert prune.threshold(W, sparsity=0.5) == pytest.approx(np.quantile(np.abs(W), 0.5))
    assert runner(half).predict(X_test[:5]).probabilities.shape == (5, 10)


def test_pruning_by_the_seeds_rule_uses_alpha_times_the_largest_weight():
    W = np.array([[0.1, -0.5], [2.0, -0.05]], dtype=np.float32)

    assert prune.threshold(W, alpha=0.1) == pytest.approx(0.2)


def test_low_rank_factorises_a_layer_that_is_close_to_low_rank_and_keeps_its_answers():
    original, _ = digits_mlp()
    model = onnx.load_model_from_string(original)
    init = next(i for i in model.graph.initializer if i.name == "coefficient")
    W = onnx.numpy_helper.to_array(init)
    U, S, Vt = np.linalg.svd(W, full_matrices=False)
    S[12:] *= 0.01  # a 64 × 64 layer whose energy sits in 12 directions
    init.CopyFrom(onnx.numpy_helper.from_array((U * S) @ Vt, "coefficient"))
    near_low_rank = model.SerializeToString()
    _, _, X_test, _ = digits_split()

    factorised, report = low_rank.factorise(near_low_rank, energy=0.99)

    assert report.details["ranks"]["coefficient"] <= 12
    assert len(factorised) < 0.8 * len(near_low_rank)
    before, after = runner(near_low_rank).predict(X_test), runner(factorised).predict(X_test)
    assert np.mean(before.labels == after.labels) > 0.97


def test_low_rank_says_why_when_no_layer_is_close_to_low_rank():
    original, _ = digits_mlp()

    with pytest.raises(NotApplicable) as caught:
        low_rank.factorise(original, energy=0.95)

    assert "no layer's weights are close enough to low rank" in caught.value.reason


def test_float16_is_refused_up_front_where_the_converted_graph_does_not_load():
    original, _ = digits_mlp()

    verdict = {a.key: a for a in applicability(original, has_calibration=True)}["float16"]

    assert not verdict.applicable and "onnxruntime refuses to load" in verdict.reason


@pytest.mark.parametrize(("model", "family", "why"), [
    (lambda: trained_model()[0], LINEAR, "LinearClassifier"),
    (wine_forest, TREES, "tree ensemble"),
])
def test_no_weight_method_applies_to_linear_models_or_forests_and_each_says_why(model, family, why):
    data = model()

    verdicts = applicability(data, has_calibration=True)

    assert graph_family(onnx.load_model_from_string(data)) == family
    assert [v.applicable for v in verdicts] == [False] * len(METHODS)
    assert all("does not apply" in v.reason and why.lower() in v.reason.lower() for v in verdicts), [v.reason for v in verdicts]
    # Each refusal names its own method (static quantization once said "Int8 dynamic quantization").
    assert all(v.reason.startswith(v.label) for v in verdicts), [(v.label, v.reason[:40]) for v in verdicts]
    with pytest.raises(NotApplicable):
        compress("int8_dynamic", data)


def test_the_digits_mlp_is_an_mlp_whose_methods_apply():
    original, _ = digits_mlp()

    verdicts = {a.key: a.applicable for a in applicability(original, has_calibration=True)}

    assert graph_family(onnx.load_model_from_string(original)) == MLP
    assert verdicts | {"float16": None} == {
        "int8_dynamic": True, "int8_static": True, "prune": True, "low_rank": True, "kmeans": True, "float16": None
    }
    assert not {a.key: a.applicable for a in applicability(original, has_calibration=False)}["int8_static"]


def test_job_options_follow_the_graph_the_recipe_and_the_datasets():
    forest = {o.kind: o for o in kind_options(onnx_bytes=wine_forest(), has_recipe=False, has_reference=True, has_evaluation_set=True)}
    linear = {o.kind: o for o in kind_options(onnx_bytes=trained_model()[0], has_recipe=True, has_reference=True, has_evaluation_set=False)}

    assert forest["distill"].applicable and forest["find_smaller"].applicable and not forest["compress_int8"].applicable
    assert "no training recipe" in forest["retrain"].reason
    assert "linear model is already as small" in linear["distill"].reason and linear["retrain"].applicable
    assert "evaluation set" in linear["find_smaller"].reason


def test_settings_are_typed_and_bounded():
    assert clean_params("distill", {"temperature": "3", "hidden_units": "12"}) == {"temperature": 3.0, "hidden_units": 12}
    with pytest.raises(BadParams, match="either alpha"):
        clean_params("compress_prune", {"alpha": 0.1, "sparsity": 0.5})
    with pytest.raises(BadParams, match="does not take"):
        clean_params("compress_int8", {"temperature": 2})


def test_distillation_makes_the_forest_twenty_times_smaller_within_two_points():
    teacher = wine_forest()
    X_train, _, X_test, y_test = wine_split()

    student, report = distill(teacher, X_train, feature_names=[f"w{i}" for i in range(13)], temperature=2.0)

    assert len(teacher) / len(student) >= 20
    assert _accuracy(student, X_test, y_test) >= _accuracy(teacher, X_test, y_test) - 0.02
    assert report.agreement > 0.95 and 0 <= report.kl_at_temperature < 0.2
    signature = inspect_model(student, expected_features=13)
    assert signature.class_labels == ["0", "1", "2"] and signature.probability_output


def test_the_kl_objective_is_zero_only_for_the_same_distribution_and_temperature_softens():
    p = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])

    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    assert kl_divergence(p, np.full_like(p, 1 / 3)) > 0.1
    assert soften(p, 4.0).max(axis=1)[0] < soften(p, 1.0).max(axis=1)[0]
    assert soften(p, 1.0) == pytest.approx(p / p.sum(axis=1, keepdims=True), abs=2e-4)
