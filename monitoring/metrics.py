"""Classification metrics over numpy arrays. No Django here.

Everything is derived from one confusion matrix of class indices (np.bincount), so a million rows
cost a few milliseconds; ROC-AUC needs one sort per class, log loss one gathered column. Results agree with scikit-learn
(tests/monitoring/test_metrics.py), with zero_division=0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import repeat

import numpy as np

# log loss clips probabilities away from 0 so one confident mistake costs -log(1e-15) ≈ 34.5, not infinity.
LOG_LOSS_EPS = 1e-15


@dataclass(frozen=True)
class ClassificationMetrics:
    n_rows: int
    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    roc_auc: float | None
    labels: list[str]
    confusion_matrix: list[list[int]]  # rows: true label, columns: predicted, in `labels` order
    precision_weighted: float = 0.0
    recall_weighted: float = 0.0
    f1_weighted: float = 0.0
    log_loss: float | None = None
    # {"precision": [...], "recall": [...], "f1": [...], "support": [...]}, in `labels` order: the per-class chart.
    per_class: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# The scalar metrics that become time series and can carry a threshold.
SCALAR_METRICS = (
    "accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc",
    "precision_weighted", "recall_weighted", "f1_weighted", "log_loss",
)


def encode(values: np.ndarray, labels: list[str]) -> np.ndarray:
    """Class indices of `values` (compared as strings) in `labels`; -1 for a value that is no label."""
    labels = [str(label) for label in labels]
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return _encode_integers(values, labels)
    if values.dtype == object:
        return _encode_objects(values, labels)
    return _encode_strings(values, labels)


def _encode_strings(values: np.ndarray, labels: list[str]) -> np.ndarray:
    values = values.astype(str)
    table = np.asarray(labels, dtype=str)
    order = np.argsort(table)
    positions = np.searchsorted(table[order], values).clip(0, max(len(table) - 1, 0))
    if len(table) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    found = table[order][positions] == values
    return np.where(found, order[positions], -1).astype(np.int64)


def _encode_objects(values: np.ndarray, labels: list[str]) -> np.ndarray:
    """encode() for an object array, which is what onnxruntime returns for a string label output.

    One dict lookup per value is about twice as fast as first converting a million Python strings to a numpy
    string array. A value the lookup misses (bytes, a number, or no label at all) takes the string path.
    """
    index: dict[str, int] = {}
    for i, label in enumerate(labels):
        index.setdefault(label, i)  # a repeated label keeps its first position, as _encode_strings does
    codes = np.fromiter(map(index.get, values, repeat(-1)), dtype=np.int64, count=len(values))
    missed = np.flatnonzero(codes < 0)
    if len(missed):
        codes[missed] = _encode_strings(values[missed], labels)
    return codes


def _encode_integers(values: np.ndarray, labels: list[str]) -> np.ndarray:
    """encode() for integer outputs (a model's int64 label output), without turning a million ints into strings."""
    numeric = {int(label): i for i, label in enumerate(labels) if label.lstrip("-").isdigit() and str(int(label)) == label}
    if not numeric:
        return np.full(len(values), -1, dtype=np.int64)
    keys = np.array(sorted(numeric), dtype=np.int64)
    codes = np.array([numeric[key] for key in keys], dtype=np.int64)
    positions = np.searchsorted(keys, values).clip(0, len(keys) - 1)
    return np.where(keys[positions] == values, codes[positions], -1)


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, *, labels: list[str], probabilities: np.ndarray | None = None
) -> ClassificationMetrics:
    """Metrics of string labels (anything is compared as its string form)."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    labels = [str(label) for label in labels] or sorted(set(y_true) | set(y_pred))
    return metrics_from_indices(encode(y_true, labels), encode(y_pred, labels), labels=labels, probabilities=probabilities)


def metrics_from_indices(
    true_index: np.ndarray, pred_index: np.ndarray, *, labels: list[str], probabilities: np.ndarray | None = None
) -> ClassificationMetrics:
    """Metrics of class indices into `labels` (-1: a value outside them, which is never right).

    A class absent from both arrays counts as zero, not as an error.
    """
    true_index = np.asarray(true_index, dtype=np.int64)
    pred_index = np.asarray(pred_index, dtype=np.int64)
    if len(true_index) != len(pred_index):
        raise ValueError("y_true and y_pred differ in length")
    if len(true_index) == 0:
        raise ValueError("no labelled rows to evaluate")
    k = len(labels)
    both = (true_index >= 0) & (pred_index >= 0)
    cm = np.bincount(true_index[both] * k + pred_index[both], minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    support = np.bincount(true_index[true_index >= 0], minlength=k).astype(np.float64)
    predicted = np.bincount(pred_index[pred_index >= 0], minlength=k).astype(np.float64)
    precision = _divide(tp, predicted)
    recall = _divide(tp, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    weights = _divide(support, np.full(k, support.sum()))
    return ClassificationMetrics(
        n_rows=int(len(true_index)),
        accuracy=float(np.trace(cm) / len(true_index)),  # -1s are left out of the matrix: never right
        precision_macro=float(precision.mean()),
        recall_macro=float(recall.mean()),
        f1_macro=float(f1.mean()),
        roc_auc=_roc_auc(true_index, probabilities, support),
        labels=list(labels),
        confusion_matrix=cm.tolist(),
        precision_weighted=float(precision @ weights),
        recall_weighted=float(recall @ weights),
        f1_weighted=float(f1 @ weights),
        log_loss=_log_loss(true_index, probabilities, k),
        per_class={
            "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(), "support": support.astype(int).tolist()
        },
    )


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def _usable(probabilities: np.ndarray | None, k: int) -> bool:
    return probabilities is not None and probabilities.ndim == 2 and probabilities.shape[1] == k


def _binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney: the chance a positive outranks a negative, ties counting half (as roc_auc_score).

    A positive scoring v has the average rank (below + through + 1) / 2 among all scores, where below and through
    count the scores < v and <= v: two binary searches in the sorted scores. That needs np.sort, several times
    faster than the argsort and gathers of ranking every row, and the rank sums stay integers, so nothing rounds
    until the last division.
    """
    ordered = np.sort(scores)
    ours = np.sort(scores[positive])  # sorted, so the searches walk `ordered` in order
    n_pos, n_neg = len(ours), len(scores) - len(ours)
    below = int(np.searchsorted(ordered, ours, side="left").sum())
    through = int(np.searchsorted(ordered, ours, side="right").sum())
    # U = rank sum - n_pos (n_pos + 1) / 2 = (below + through + n_pos) / 2 - n_pos (n_pos + 1) / 2
    return (below + through - n_pos * n_pos) / (2 * n_pos * n_neg)


def _roc_auc(true_index: np.ndarray, probabilities: np.ndarray | None, support: np.ndarray) -> float | None:
    """One-vs-rest macro ROC-AUC over the classes present; None when undefined (no scores, or one class present)."""
    k = len(support)
    if not _usable(probabilities, k):
        return None
    present = np.flatnonzero(support > 0)
    if len(present) < 2 or len(present) == len(true_index):
        return None
    if k == 2:
        return _binary_auc(probabilities[:, 1], true_index == 1)
    return float(np.mean([_binary_auc(probabilities[:, j], true_index == j) for j in present]))


def _log_loss(true_index: np.ndarray, probabilities: np.ndarray | None, k: int) -> float | None:
    """Mean negative log-probability of the true class; rows are renormalised, as scikit-learn does.

    In float64 whatever the input's precision, but only the true class's column and the row sums are widened:
    a float64 copy of a million rows of probabilities would cost more than the rest of the function.
    """
    if not _usable(probabilities, k) or np.any(true_index < 0):
        return None
    totals = probabilities.sum(axis=1, dtype=np.float64)
    chosen = np.take_along_axis(probabilities, true_index[:, None], axis=1)[:, 0].astype(np.float64)
    chosen = np.clip(chosen / np.where(totals > 0, totals, 1), LOG_LOSS_EPS, 1.0)
    return float(-np.mean(np.log(chosen)))


def metrics_by_version(
    true_index: np.ndarray, pred_index: np.ndarray, versions: np.ndarray, *, labels: list[str]
) -> list[dict]:
    """Accuracy and macro-F1 of the logged predictions, per version that served them (0: unknown), newest first."""
    out = []
    for number in sorted({int(v) for v in np.unique(versions)}, reverse=True):
        rows = versions == number
        m = metrics_from_indices(true_index[rows], pred_index[rows], labels=labels)
        out.append({"version": number or None, "n_rows": m.n_rows, "accuracy": m.accuracy, "f1_macro": m.f1_macro})
    return out
