"""Drift of one categorical feature (or of predicted classes) from category counts. No Django here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from monitoring.drift.numeric import jensen_shannon, psi


@dataclass(frozen=True)
class CategoryComparison:
    categories: list  # union of both sides, reference categories first (sorted), then unseen ones (sorted)
    reference_counts: np.ndarray
    current_counts: np.ndarray
    unseen: list  # categories in the current window that the reference never had


def align(reference: dict, current: dict) -> CategoryComparison:
    """Put two {category: count} maps on one axis; categories unseen in the reference are kept and named."""
    known = sorted(reference)
    unseen = sorted(set(current) - set(reference))
    categories = known + unseen
    return CategoryComparison(
        categories=categories,
        reference_counts=np.array([reference.get(c, 0) for c in categories], dtype=np.int64),
        current_counts=np.array([current.get(c, 0) for c in categories], dtype=np.int64),
        unseen=unseen,
    )


def counts_of(values: np.ndarray) -> dict:
    """{category: count} with plain Python keys (floats for numeric codes, str for labels), in sorted order."""
    categories, counts = np.unique(values, return_counts=True)
    return {c.item() if hasattr(c, "item") else c: int(n) for c, n in zip(categories, counts)}


def chi_square(comparison: CategoryComparison) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2 x k table (reference counts, current counts).

    scipy.stats.chi2_contingency is the definition (Yates' correction when there is one degree of freedom).
    Categories absent from both sides are dropped; a single category left means nothing can differ: (0, 1).
    """
    table = np.vstack([comparison.reference_counts, comparison.current_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    outcome = stats.chi2_contingency(table)
    return float(outcome.statistic), float(outcome.pvalue)


def distances(comparison: CategoryComparison) -> tuple[float, float]:
    """(Jensen-Shannon distance, PSI) over the aligned categories."""
    return (
        jensen_shannon(comparison.reference_counts, comparison.current_counts),
        psi(comparison.reference_counts, comparison.current_counts),
    )
