"""Classification metrics over numpy arrays. No Django here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn import metrics as skm


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

    def as_dict(self) -> dict:
        return asdict(self)


# The scalar metrics that become time series and can carry a threshold.
SCALAR_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc")


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, *, labels: list[str], probabilities: np.ndarray | None = None
) -> ClassificationMetrics:
    """Macro-averaged metrics; a class absent from both arrays counts as zero, not as an error."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    if len(y_true) == 0:
        raise ValueError("no labelled rows to evaluate")
    labels = [str(label) for label in labels] or sorted(set(y_true) | set(y_pred))
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    return ClassificationMetrics(
        n_rows=int(len(y_true)),
        accuracy=float(np.mean(y_true == y_pred)),
        precision_macro=float(precision),
        recall_macro=float(recall),
        f1_macro=float(f1),
        roc_auc=_roc_auc(y_true, probabilities, labels),
        labels=labels,
        confusion_matrix=skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    )


def _roc_auc(y_true: np.ndarray, probabilities: np.ndarray | None, labels: list[str]) -> float | None:
    """One-vs-rest macro ROC-AUC; None when it is undefined (no scores, or one class present)."""
    if probabilities is None or probabilities.shape[1] != len(labels):
        return None
    present = [i for i, label in enumerate(labels) if np.any(y_true == label)]
    if len(present) < 2:
        return None
    if len(labels) == 2:
        return float(skm.roc_auc_score(y_true == labels[1], probabilities[:, 1]))
    scores = [skm.roc_auc_score(y_true == labels[i], probabilities[:, i]) for i in present]
    return float(np.mean(scores))
