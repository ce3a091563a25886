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
    """Where each current value falls in the sorted reference: the merge KS needs."""

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


def wasserstein(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """W1, equal to scipy.stats.wasserstein_distance(reference, current) (to rounding: tested to 1e-9).

    The area between the two ECDFs equals the area between the two quantile functions, and those are step
    functions whose steps sit at i/n1 and j/n2: on each piece between consecutive steps both quantiles are known
    values, a[i] and b[j]. The steps' order is integer arithmetic, so no search or merge of the values is needed:
    O(n1 + n2) sequential reads, where the ECDF form needed a binary search per value and a gather of the other
    sample (most of a wide check's time).
    """
    a, b = reference_sorted, current_sorted
    n1, n2 = len(a), len(b)
    # The steps in units of 1/(n1*n2): i*n2 for a, j*n1 for b, merged by counting. Before b's step j come the
    # a steps below it, ceil(j*n1/n2) of them; before a's step i, the b steps at or below it, floor(i*n2/n1) + 1
    # (a tie puts b first: the piece between them has width 0 and adds nothing).
    i = np.arange(n1 + 1, dtype=np.int64)
    j = np.arange(n2 + 1, dtype=np.int64)
    steps = np.empty(n1 + n2 + 2, dtype=np.int64)
    steps[j + (j * n1 + n2 - 1) // n2] = j * n1
    steps[i + i * n2 // n1 + 1] = i * n2
    left = steps[:-1]
    # On the piece starting at step s, the quantiles are a[s // n2] and b[s // n1]; the last step ends the area.
    gap = a[np.minimum(left // n2, n1 - 1)].astype(np.float64)
    gap -= b[np.minimum(left // n1, n2 - 1)]
    np.abs(gap, out=gap)
    gap *= np.diff(steps)
    # A sum, not np.dot: a BLAS call starts its thread pool, and beside the check's own threads on a busy machine
    # that cost ~30 ms a call, more than the rest of the feature (measured in bench/drift.py --wide).
    return float(gap.sum()) / (float(n1) * float(n2))


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
