"""Concept drift: has the model got worse? Measured where labels exist, estimated where they do not yet.
No Django here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn.isotonic import IsotonicRegression


@dataclass(frozen=True)
class PerformanceDrop:
    metric: str
    baseline: float
    baseline_n: int
    current: float
    current_n: int
    difference: float  # current - baseline
    ci_low: float  # two-sided (1 - alpha) interval for the difference (Wald, unpooled)
    ci_high: float
    p_value: float  # two-sided, from the same z statistic as the interval
    significant: bool  # a drop whose interval lies wholly below zero (equivalently p < alpha and current < baseline)
    level: float = 0.95  # the interval's confidence level, 1 - alpha

    def as_dict(self) -> dict:
        return asdict(self)


def accuracy_drop(
    *, baseline_correct: int, baseline_n: int, current_correct: int, current_n: int, alpha: float = 0.05
) -> PerformanceDrop:
    """Is the current accuracy significantly below the baseline's? Not a bare threshold: 3 errors in 20 rows is
    not a drop.

    One procedure for the test and the interval (two-sided Wald, unpooled standard error), so they always agree:
    the drop is significant exactly when its interval excludes zero. An earlier one-sided pooled test could call
    a drop significant next to an interval that spanned zero.
    """
    if baseline_n <= 0 or current_n <= 0:
        raise ValueError("both samples need at least one labelled row")
    p1, p2 = baseline_correct / baseline_n, current_correct / current_n
    difference = p2 - p1
    se = math.sqrt(p1 * (1 - p1) / baseline_n + p2 * (1 - p2) / current_n)
    z_crit = float(stats.norm.ppf(1 - alpha / 2))
    if se == 0:
        # Both all right or all wrong: no spread to test against. Equal is no drop; a certain change is one.
        p_value = 1.0 if difference == 0 else 0.0
        low = high = difference
    else:
        p_value = float(2 * stats.norm.sf(abs(difference) / se))
        low, high = difference - z_crit * se, difference + z_crit * se
    return PerformanceDrop(
        metric="accuracy",
        baseline=p1,
        baseline_n=baseline_n,
        current=p2,
        current_n=current_n,
        difference=difference,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        significant=bool(high < 0),
        level=1 - alpha,
    )


@dataclass(frozen=True)
class EstimatedPerformance:
    """Accuracy and macro-F1 expected from the model's own (calibrated) probabilities: NannyML's CBPE."""

    accuracy: float
    f1_macro: float
    n: int
    calibrated: bool

    def as_dict(self) -> dict:
        return asdict(self)


def calibrators(probabilities: np.ndarray, labels: np.ndarray, class_labels: list[str]) -> list[IsotonicRegression | None]:
    """One isotonic map per class, from predicted probability to the observed frequency of that class, fitted on
    labelled reference rows. A class absent from the labels keeps its raw probability (None)."""
    labels = np.asarray(labels).astype(str)
    maps: list[IsotonicRegression | None] = []
    for k, label in enumerate(class_labels):
        hit = (labels == label).astype(float)
        if hit.min() == hit.max():
            maps.append(None)
            continue
        maps.append(IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probabilities[:, k], hit))
    return maps


def estimate_performance(probabilities: np.ndarray, maps: list[IsotonicRegression | None] | None = None) -> EstimatedPerformance:
    """Expected accuracy = mean probability of the predicted class; expected per-class TP, FP and FN from the
    probabilities give an expected macro-F1. Calibration first, when reference labels made it possible."""
    p = np.asarray(probabilities, dtype=np.float64)
    if len(p) == 0:
        return EstimatedPerformance(0.0, 0.0, 0, maps is not None)
    predicted = np.argmax(p, axis=1)  # the model's own decision, on its raw scores
    if maps is not None:
        p = np.column_stack([m.predict(p[:, k]) if m is not None else p[:, k] for k, m in enumerate(maps)])
        sums = p.sum(axis=1, keepdims=True)
        p = np.where(sums > 0, p / np.where(sums > 0, sums, 1), 1.0 / p.shape[1])
    rows = np.arange(len(p))
    accuracy = float(p[rows, predicted].mean())
    f1s = []
    for k in range(p.shape[1]):
        chosen = predicted == k
        tp = float(p[chosen, k].sum())
        fp = float((1 - p[chosen, k]).sum())
        fn = float(p[~chosen, k].sum())
        denominator = 2 * tp + fp + fn
        f1s.append(2 * tp / denominator if denominator > 0 else 0.0)
    return EstimatedPerformance(accuracy, float(np.mean(f1s)), len(p), maps is not None)
