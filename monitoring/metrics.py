"""Classification metrics over numpy arrays. No Django here.

Everything is derived from one confusion matrix of class indices (np.bincount), so a million rows
cost a few milliseconds; ROC-AUC needs one sort per class. Results agree with scikit-learn
(tests/monitoring/test_metrics.py), with zero_division=0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
    values = values.astype(str)
    table = np.asarray(labels, dtype=str)
    order = np.argsort(table)
    positions = np.searchsorted(table[order], values).clip(0, max(len(table) - 1, 0))
    if len(table) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    found = table[order][positions] == values
    return np.where(found, order[positions], -1).astype(np.int64)


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
        accuracy=float(np.mean(true_index == pred_index)),
        precision_macro=float(precision.mean()),
        recall_macro=float(recall.mean()),
        f1_macro=float(f1.mean()),
        roc_auc=_roc_auc(true_index, probabilities, k),
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


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney: the chance a positive outranks a negative, ties counting half (as roc_auc_score).

    One unstable sort, then tied runs get their average rank: scipy's rankdata does a stable sort
    and was two thirds of an evaluation's time at a million rows and ten classes.
    """
    order = np.argsort(scores)
    ordered = scores[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    run = np.cumsum(starts) - 1
    bounds = np.r_[np.flatnonzero(starts), len(ordered)]
    average_rank = (bounds[:-1] + 1 + bounds[1:]) / 2  # 1-based ranks first+1 .. last, averaged
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    rank_sum = float(average_rank[run][positive[order]].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _roc_auc(true_index: np.ndarray, probabilities: np.ndarray | None, k: int) -> float | None:
    """One-vs-rest macro ROC-AUC over the classes present; None when undefined (no scores, or one class present)."""
    if not _usable(probabilities, k):
        return None
    present = [j for j in range(k) if np.any(true_index == j)]
    if len(present) < 2 or len(present) == len(true_index):
        return None
    if k == 2:
        return _binary_auc(true_index == 1, probabilities[:, 1])
    return float(np.mean([_binary_auc(true_index == j, probabilities[:, j]) for j in present]))


def _log_loss(true_index: np.ndarray, probabilities: np.ndarray | None, k: int) -> float | None:
    """Mean negative log-probability of the true class; rows are renormalised, as scikit-learn does."""
    if not _usable(probabilities, k) or np.any(true_index < 0):
        return None
    P = np.asarray(probabilities, dtype=np.float64)
    P = P / np.where(P.sum(axis=1, keepdims=True) > 0, P.sum(axis=1, keepdims=True), 1)
    chosen = np.clip(P[np.arange(len(P)), true_index], LOG_LOSS_EPS, 1.0)
    return float(-np.mean(np.log(chosen)))
