"""Classification metrics agree with scikit-learn and stay defined on awkward inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from monitoring.metrics import SCALAR_METRICS, classification_metrics, encode, metrics_from_indices


def _sample(n_classes: int, n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = [f"c{i}" for i in range(n_classes)]
    y_true = rng.choice(labels, n)
    scores = rng.random((n, n_classes)) + np.eye(n_classes)[[labels.index(v) for v in y_true]] * 0.6
    probabilities = scores / scores.sum(axis=1, keepdims=True)
    y_pred = np.array(labels)[probabilities.argmax(axis=1)]
    return labels, y_true, y_pred, probabilities


@pytest.mark.parametrize("n_classes", [2, 4])
def test_metrics_equal_scikit_learns(n_classes):
    labels, y_true, y_pred, probabilities = _sample(n_classes)

    m = classification_metrics(y_true, y_pred, labels=labels, probabilities=probabilities)

    assert m.n_rows == 400
    assert m.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m.precision_macro == pytest.approx(skm.precision_score(y_true, y_pred, average="macro"))
    assert m.recall_macro == pytest.approx(skm.recall_score(y_true, y_pred, average="macro"))
    assert m.f1_macro == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    expected_auc = (
        skm.roc_auc_score(y_true == labels[1], probabilities[:, 1])
        if n_classes == 2
        else skm.roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro", labels=labels)
    )
    assert m.roc_auc == pytest.approx(expected_auc)
    assert m.confusion_matrix == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()


def test_a_class_that_never_occurs_counts_as_zero_and_auc_needs_two_present_classes():
    m = classification_metrics(
        np.array(["a", "a", "a"]), np.array(["a", "a", "b"]), labels=["a", "b", "c"],
        probabilities=np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.4, 0.6, 0.0]]),
    )

    assert m.accuracy == pytest.approx(2 / 3)
    assert m.recall_macro == pytest.approx((2 / 3) / 3)  # b and c recall 0 with zero_division=0
    assert m.roc_auc is None
    assert m.confusion_matrix == [[2, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_labels_are_compared_as_strings():
    m = classification_metrics(np.array([0, 1, 1]), np.array(["0", "1", "0"]), labels=["0", "1"])

    assert m.accuracy == pytest.approx(2 / 3) and m.roc_auc is None


def test_it_refuses_empty_or_mismatched_inputs():
    with pytest.raises(ValueError, match="no labelled rows"):
        classification_metrics(np.array([]), np.array([]), labels=["0", "1"])
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics(np.array(["0"]), np.array(["0", "1"]), labels=["0", "1"])


def test_every_scalar_metric_is_in_the_dict():
    labels, y_true, y_pred, probabilities = _sample(2)

    as_dict = classification_metrics(y_true, y_pred, labels=labels, probabilities=probabilities).as_dict()

    assert all(isinstance(as_dict[name], float) for name in SCALAR_METRICS)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_weighted_per_class_and_log_loss_equal_scikit_learns(n_classes):
    labels, y_true, y_pred, probabilities = _sample(n_classes, n=3000, seed=n_classes)

    m = classification_metrics(y_true, y_pred, labels=labels, probabilities=probabilities)

    for name, score in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        assert getattr(m, f"{name}_weighted") == pytest.approx(score(y_true, y_pred, labels=labels, average="weighted"))
        assert m.per_class[name] == pytest.approx(list(score(y_true, y_pred, labels=labels, average=None)))
    assert m.per_class["support"] == [int(np.sum(y_true == label)) for label in labels]
    assert m.log_loss == pytest.approx(skm.log_loss(y_true, probabilities, labels=labels))


def test_tied_scores_give_scikit_learns_auc():
    y_true = np.array(["0", "1", "1", "0", "1", "0"])
    scores = np.array([0.5, 0.5, 0.9, 0.1, 0.5, 0.5])

    m = classification_metrics(y_true, y_true, labels=["0", "1"], probabilities=np.c_[1 - scores, scores])

    assert m.roc_auc == pytest.approx(skm.roc_auc_score(y_true == "1", scores))


def test_a_prediction_outside_the_labels_is_wrong_and_left_out_of_the_matrix():
    m = classification_metrics(np.array(["a", "b", "b"]), np.array(["a", "zzz", "b"]), labels=["a", "b"])

    assert m.accuracy == pytest.approx(2 / 3)
    assert m.confusion_matrix == [[1, 0], [0, 1]]
    assert m.recall_macro == pytest.approx(skm.recall_score(["a", "b", "b"], ["a", "zzz", "b"], labels=["a", "b"], average="macro"))


def test_integer_outputs_encode_like_their_strings():
    labels = ["0", "1", "2", "10", "cat"]
    values = np.array([10, 2, 7, 0, 1, 10])

    assert encode(values, labels).tolist() == encode(values.astype(str), labels).tolist() == [3, 2, -1, 0, 1, 3]


def test_class_indices_and_float32_scores_give_scikit_learns_metrics_at_ten_classes():
    # The evaluation job's path: class indices in, the model's float32 probabilities, many tied scores.
    rng = np.random.default_rng(7)
    n, k = 20_000, 10
    labels = [str(i) for i in range(k)]
    true_index = rng.integers(0, k, n)
    scores = rng.random((n, k)) + np.eye(k)[true_index] * 0.8
    probabilities = np.round(scores / scores.sum(axis=1, keepdims=True), 2).astype(np.float32)
    pred_index = probabilities.argmax(axis=1)
    y_true, y_pred = np.array(labels)[true_index], np.array(labels)[pred_index]

    m = metrics_from_indices(true_index.astype(np.int16), pred_index, labels=labels, probabilities=probabilities)

    assert m.accuracy == skm.accuracy_score(y_true, y_pred)
    assert m.confusion_matrix == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    for name, score in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        for average in ("macro", "weighted"):
            assert getattr(m, f"{name}_{average}") == pytest.approx(score(y_true, y_pred, labels=labels, average=average))
        assert m.per_class[name] == pytest.approx(list(score(y_true, y_pred, labels=labels, average=None)))
    # One-vs-rest macro by hand: the rounded rows no longer sum to one, which multi_class="ovr" insists on.
    expected_auc = np.mean([skm.roc_auc_score(true_index == j, probabilities[:, j]) for j in range(k)])
    assert m.roc_auc == pytest.approx(expected_auc, rel=1e-12)
    # Our log loss renormalises each row (as scikit-learn did before 1.5); 1.9 expects rows that already sum to one.
    widened = probabilities.astype(np.float64)
    expected_loss = skm.log_loss(y_true, widened / widened.sum(axis=1, keepdims=True), labels=labels)
    assert m.log_loss == pytest.approx(expected_loss, rel=1e-12)


def test_a_binary_auc_with_runs_of_ties_equals_scikit_learns():
    rng = np.random.default_rng(3)
    positive = rng.random(5000) < 0.3
    scores = np.round(rng.random(5000) * 0.5 + positive * 0.3, 1)  # six distinct values: every row is in a tie

    m = metrics_from_indices(positive.astype(int), positive.astype(int), labels=["0", "1"], probabilities=np.c_[1 - scores, scores])

    assert m.roc_auc == pytest.approx(skm.roc_auc_score(positive, scores), rel=1e-12)


def test_object_arrays_encode_like_their_strings():
    # onnxruntime gives a string label output as an object array of str; bytes and numbers take the string path.
    labels = ["0", "1", "10", "cat"]
    values = np.array(["cat", "10", b"1", 0, "dog", np.str_("1"), "0"], dtype=object)

    assert encode(values, labels).tolist() == encode(values.astype(str), labels).tolist() == [3, 2, 1, 0, -1, 1, 0]


def test_a_value_outside_the_labels_is_wrong_even_against_another_outsider():
    m = metrics_from_indices(np.array([-1, 0, 1]), np.array([-1, 0, 0]), labels=["a", "b"])

    assert m.accuracy == pytest.approx(1 / 3)
    assert m.confusion_matrix == [[1, 0], [1, 0]]
