"""Data and prediction drift between a reference sample and a current window. No Django here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    test: str
    statistic: float
    p_value: float
    threshold: float  # the per-test p-value after multiple-testing correction
    drifted: bool
    reference_mean: float
    current_mean: float


@dataclass(frozen=True)
class DriftResult:
    n_reference: int
    n_current: int
    features: list[FeatureDrift]  # largest statistic first
    n_drifted: int
    share_drifted: float
    drifted: bool
    prediction_drift: dict

    def features_as_dicts(self) -> list[dict]:
        return [asdict(f) for f in self.features]


# A window smaller than this says too little to test; the check reports "no data" instead of a verdict.
MIN_CURRENT_ROWS = 30


def _finite(column: np.ndarray) -> np.ndarray:
    return column[np.isfinite(column)]


def feature_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    feature_names: list[str],
    p_value: float = 0.05,
    dataset_share: float = 0.5,
    reference_predictions: np.ndarray | None = None,
    current_predictions: np.ndarray | None = None,
) -> DriftResult:
    """Two-sample KS per feature, Bonferroni-corrected so `p_value` is the family-wise error rate.

    A constant column drifts only if its value changed; an all-NaN side gives p=1 (nothing to compare).
    The dataset drifts when at least `dataset_share` of the features do.
    """
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    n_features = len(feature_names)
    threshold = p_value / max(n_features, 1)
    results = []
    for j, name in enumerate(feature_names):
        ref, cur = _finite(reference[:, j]), _finite(current[:, j])
        if len(ref) == 0 or len(cur) == 0:
            statistic, p = 0.0, 1.0
        else:
            outcome = stats.ks_2samp(ref, cur)
            statistic, p = float(outcome.statistic), float(outcome.pvalue)
        results.append(
            FeatureDrift(
                feature=name,
                test="ks",
                statistic=statistic,
                p_value=p,
                threshold=threshold,
                drifted=p < threshold,
                reference_mean=float(ref.mean()) if len(ref) else 0.0,
                current_mean=float(cur.mean()) if len(cur) else 0.0,
            )
        )
    results.sort(key=lambda f: f.statistic, reverse=True)
    n_drifted = sum(f.drifted for f in results)
    share = n_drifted / n_features if n_features else 0.0
    return DriftResult(
        n_reference=len(reference),
        n_current=len(current),
        features=results,
        n_drifted=n_drifted,
        share_drifted=share,
        drifted=n_features > 0 and share >= dataset_share,
        prediction_drift=prediction_drift(reference_predictions, current_predictions, p_value=p_value),
    )


def prediction_drift(reference: np.ndarray | None, current: np.ndarray | None, *, p_value: float) -> dict:
    """Chi-square test of the predicted-class distribution; empty when either side is missing."""
    if reference is None or current is None or len(reference) == 0 or len(current) == 0:
        return {}
    reference, current = np.asarray(reference).astype(str), np.asarray(current).astype(str)
    classes = sorted(set(reference) | set(current))
    ref_counts = np.array([np.sum(reference == c) for c in classes], dtype=float)
    cur_counts = np.array([np.sum(current == c) for c in classes], dtype=float)
    if len(classes) < 2:
        statistic, p = 0.0, 1.0
    else:
        table = np.vstack([ref_counts, cur_counts])
        table = table[:, table.sum(axis=0) > 0]
        statistic, p, _, _ = stats.chi2_contingency(table)
    return {
        "test": "chi_square",
        "classes": classes,
        "reference": (ref_counts / ref_counts.sum()).round(6).tolist(),
        "current": (cur_counts / cur_counts.sum()).round(6).tolist(),
        "statistic": float(statistic),
        "p_value": float(p),
        "drifted": bool(p < p_value),
    }
