"""Exact two-sample statistics for one numeric feature, from sorted arrays. No Django here.

The reference side comes pre-sorted from its stored profile, so a check sorts only the current window and
merges it against the reference with one binary search (`np.searchsorted` of sorted keys, cache-friendly).
Every number here equals what scipy computes from the raw samples, not an approximation of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

# scipy.stats.ks_2samp(method="auto") computes the exact p-value while both samples have at most this many
# values, and Smirnov's asymptotic distribution above it; we make the same choice so p-values agree.
KS_EXACT_MAX_N = 10_000
# See ks_two_sample: p-values below this come from the asymptotic distribution (|error| < 1e-12, tested).
ASYMPTOTIC_P_MAX = 1e-12
# Evidently's floor for the reference std when normalising Wasserstein: a constant reference column would
# otherwise divide by zero. Any move of a constant column by more than 1e-4 then reads as drift at 0.1.
MIN_NORM_STD = 0.001
# PSI and Jensen-Shannon compare shares in reference-quantile bins; an empty bin gets this share instead of
# zero so the log stays finite (the usual PSI convention).
EMPTY_BIN_SHARE = 1e-4


@dataclass(frozen=True)
class KS:
    statistic: float
    p_value: float


@dataclass(frozen=True)
class Ranks:
    """Where each current value falls in the sorted reference: the one merge both KS and Wasserstein need."""

    below_or_equal: np.ndarray  # reference values <= current[j]
    below: np.ndarray  # reference values < current[j]


def ranks(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> Ranks:
    below_or_equal = np.searchsorted(reference_sorted, current_sorted, side="right")
    # Only a current value equal to some reference value has below < below_or_equal; search again for those alone.
    previous = reference_sorted[np.maximum(below_or_equal - 1, 0)]
    tied = np.flatnonzero((previous == current_sorted) & (below_or_equal > 0))
    below = below_or_equal
    if len(tied):
        below = below_or_equal.copy()
        below[tied] = np.searchsorted(reference_sorted, current_sorted[tied], side="left")
    return Ranks(below_or_equal=below_or_equal, below=below)


def ks_two_sample(reference_sorted: np.ndarray, current_sorted: np.ndarray, r: Ranks | None = None) -> KS:
    """Two-sided two-sample KS, equal to scipy.stats.ks_2samp(reference, current) in its default mode.

    Both inputs are sorted, finite and non-empty. The supremum of F_ref - F_cur is reached just before a current
    value (or after the last one) and the supremum of F_cur - F_ref at a current value, so counting reference
    values below / up to each current value is enough: O(m log n) with no merge of the two samples.
    """
    n1, n2 = len(reference_sorted), len(current_sorted)
    if max(n1, n2) <= KS_EXACT_MAX_N:
        # Small samples: scipy's exact path (lattice-path counting) is the definition; delegating is cheap.
        outcome = stats.ks_2samp(reference_sorted, current_sorted)
        return KS(float(outcome.statistic), float(outcome.pvalue))
    r = r or ranks(reference_sorted, current_sorted)
    # scipy evaluates cdf1 - cdf2 as count1/n1 - count2/n2 at every sample point; the same counts divided the
    # same way give bit-identical candidates, so the maxima agree exactly. (In place: one temporary, not four.)
    cdf_current = np.arange(n2, dtype=np.float64)
    cdf_current /= n2
    gap = r.below / n1
    gap -= cdf_current
    d_plus = max(float(np.max(gap)), 0.0)
    cdf_current = np.arange(1, n2 + 1, dtype=np.float64)
    cdf_current /= n2
    np.divide(r.below_or_equal, n1, out=gap)
    np.subtract(cdf_current, gap, out=gap)
    d_minus = max(float(np.max(gap)), 0.0)
    d = min(max(d_plus, d_minus), 1.0)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = np.round(m * n / (m + n))
    # scipy's finite-n kstwo.sf takes ~1 s per call at en = 500k once p < 1e-3; the asymptotic Kolmogorov tail
    # is ~1 % above it there. Below ASYMPTOTIC_P_MAX the two differ by less than 1e-12 in absolute terms, far
    # under any significance level, so the cheap one is used and the verdict is the same.
    asymptotic = float(stats.kstwobign.sf(d * math.sqrt(en)))
    if asymptotic < ASYMPTOTIC_P_MAX:
        return KS(d, asymptotic)
    p_value = float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))
    return KS(d, p_value)


def wasserstein(reference_sorted: np.ndarray, current_sorted: np.ndarray, r: Ranks | None = None) -> float:
    """W1 = integral of |F_ref - F_cur|, equal to scipy.stats.wasserstein_distance(reference, current).

    Both ECDFs are constant between consecutive values of the pooled sample. Each such piece starts at a
    reference value (up to the next reference or current value) or at a current value that no reference value
    equals; the ECDF heights on it are counts we already have, so no pooled sort is needed.
    """
    a, b = reference_sorted, current_sorted
    n1, n2 = len(a), len(b)
    r = r or ranks(a, b)
    # current values <= a[i], for every i: a[i] >= b[j] exactly when fewer than i+1 reference values are < b[j].
    b_up_to = np.cumsum(np.bincount(r.below, minlength=n1 + 1)[:n1])
    total = _pieces(a, b, b_up_to, np.arange(1, n1 + 1), n1, n2, mask=None)
    # A current value tied with a reference value starts no piece of its own: the reference piece covers it.
    alone = r.below == r.below_or_equal
    total += _pieces(b, a, r.below_or_equal, np.arange(1, n2 + 1), n2, n1, mask=alone)
    return total


def _pieces(x: np.ndarray, other: np.ndarray, other_up_to: np.ndarray, own_up_to: np.ndarray,
            n_own: int, n_other: int, mask: np.ndarray | None) -> float:
    """Sum of |F_own - F_other| * width over the pieces [x[i], next pooled value) that start at x's values."""
    # The next pooled value after x[i] is the nearer of x[i+1] and the first other value above x[i]; past the
    # last value both ECDFs are 1, so the unbounded last piece has height 0 and is left out.
    k = len(x) - 1
    up_to = other_up_to[:k]
    width = np.append(other, np.inf)[up_to]
    np.minimum(width, x[1:], out=width)
    width -= x[:k]
    height = np.arange(1, k + 1, dtype=np.float64)
    height /= n_own
    height -= up_to / n_other
    np.abs(height, out=height)
    if mask is not None:
        height *= mask[:k]
    total = float(np.dot(height, width))
    if other_up_to[k] < n_other and (mask is None or mask[k]):
        # The last own value still has other values above it: one more bounded piece.
        total += abs(1.0 - other_up_to[k] / n_other) * float(other[other_up_to[k]] - x[k])
    return total


def sorted_quantile(values_sorted: np.ndarray, q: float) -> float:
    """np.quantile's default (linear) for an already sorted array, without its O(n) partition."""
    position = q * (len(values_sorted) - 1)
    lo = int(np.floor(position))
    hi = min(lo + 1, len(values_sorted) - 1)
    return float(values_sorted[lo] + (values_sorted[hi] - values_sorted[lo]) * (position - lo))


def quantile_edges(reference_sorted: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles, deduplicated (a column with few values gets fewer bins)."""
    if len(reference_sorted) == 0:
        return np.empty(0)
    return np.unique([sorted_quantile(reference_sorted, q) for q in np.linspace(0, 1, n_bins + 1)[1:-1]])


def binned_counts(values_sorted: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e0], (e0, e1], ..., (e_last, inf) for sorted values: one search per edge."""
    cut = np.searchsorted(values_sorted, inner_edges, side="right")
    return np.diff(np.concatenate([[0], cut, [len(values_sorted)]])).astype(np.int64)


def shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if total == 0:
        return np.full(len(counts), 1.0 / max(len(counts), 1))
    return np.maximum(counts / total, EMPTY_BIN_SHARE)


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index: sum over bins of (cur - ref) * ln(cur / ref), shares floored at 1e-4."""
    p, q = shares(reference_counts), shares(current_counts)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, so in [0, 1]) between the two binned distributions."""
    p = reference_counts / max(reference_counts.sum(), 1)
    q = current_counts / max(current_counts.sum(), 1)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    m = (p + q) / 2
    divergence = 0.0
    for a in (p, q):
        mask = a > 0
        divergence += 0.5 * float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))
    return math.sqrt(max(divergence, 0.0))


def histogram(reference_sorted: np.ndarray, current_sorted: np.ndarray, n_bins: int) -> dict:
    """Shares of both samples in common equal-width bins, for the overlaid chart.

    The range spans the 0.5th-99.5th percentiles of both samples so one extreme value cannot squeeze every
    other value into a single bar; values outside fall into the end bins.
    """
    present = [s for s in (reference_sorted, current_sorted) if len(s)]
    if not present:
        return {"edges": [], "reference": [], "current": []}
    lo = min(sorted_quantile(s, 0.005) for s in present)
    hi = max(sorted_quantile(s, 0.995) for s in present)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, n_bins + 1)
    inner = edges[1:-1]

    def share(values: np.ndarray) -> list[float]:
        counts = binned_counts(values, inner)
        return (counts / max(len(values), 1)).round(6).tolist()

    return {"edges": edges.round(9).tolist(), "reference": share(reference_sorted), "current": share(current_sorted)}
