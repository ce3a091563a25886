"""What the serving client reports about its predict calls: how long each took and how many failed. No Django here.

A batch carries the latency of each call whose rows start in it (`latency_us`), and the counts `calls` (including
failed ones) and `errors` (an exception in predict; those calls logged no rows, so a report may have no rows at
all). The server keeps no per-call values: a batch's latencies become one fixed-bucket histogram, so a stage's
calls are a sum of small arrays whatever their number (monitoring/call_models.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

# Four buckets per octave from 16 µs: a bucket spans 19 %, so a percentile read from the histogram (geometric
# interpolation within its bucket) is within about ±9 % of the exact one, well inside a 1.5× guard threshold.
# 96 buckets reach 16 µs × 2^23.75 ≈ 3.6 minutes; slower calls share the last bucket.
BUCKETS_PER_OCTAVE = 4
LOWEST_EDGE_US = 16.0
N_BUCKETS = 96
# Bucket i holds latencies in [EDGES_US[i-1], EDGES_US[i]); bucket 0 everything below 16 µs, the last one the rest.
EDGES_US = LOWEST_EDGE_US * 2.0 ** (np.arange(N_BUCKETS - 1) / BUCKETS_PER_OCTAVE)
HISTOGRAM_DTYPE = "<u4"  # as stored: 384 bytes per batch

MAX_LATENCY_US = 3_600_000_000  # an hour: anything longer is a client bug, not a measurement
# One report covers at most a flush interval of one instance's calls; far beyond any real rate, and it keeps
# the counts inside the stored 32-bit integers.
MAX_CALLS = 10_000_000


class CallReportInvalid(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = f"{field} {message}"


@dataclass(frozen=True)
class CallReport:
    """One batch's calls: `histogram` (N_BUCKETS counts of the successful calls' latencies), calls, errors."""

    calls: int
    errors: int
    histogram: np.ndarray

    def histogram_bytes(self) -> bytes:
        return np.ascontiguousarray(self.histogram, dtype=HISTOGRAM_DTYPE).tobytes()


def histogram_of(latency_us: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(EDGES_US, latency_us, side="right"), minlength=N_BUCKETS).astype(np.int64)


def _count(field: str, value: Any) -> int:
    if isinstance(value, np.ndarray):
        if value.shape not in ((), (1,)) or value.dtype.kind not in "iu":
            raise CallReportInvalid(field, "must be one integer")
        value = int(value.reshape(-1)[0])
    elif isinstance(value, bool) or not isinstance(value, int):
        raise CallReportInvalid(field, f"must be a whole number, got {type(value).__name__}")
    if not 0 <= value <= MAX_CALLS:
        raise CallReportInvalid(field, f"must be between 0 and {MAX_CALLS:,}")
    return value


def _latencies(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "iuf":
            raise CallReportInvalid("latency_us", "must be a 1-d array of numbers")
        latency = value.astype(np.float64)
    else:
        if not isinstance(value, list) or not all(type(v) in (int, float) for v in value):
            raise CallReportInvalid("latency_us", "must be a list of numbers (µs, one per call)")
        latency = np.asarray(value, dtype=np.float64).reshape(-1)
    if not (np.isfinite(latency) & (latency >= 0) & (latency <= MAX_LATENCY_US)).all():
        raise CallReportInvalid("latency_us", f"must hold finite numbers between 0 and {MAX_LATENCY_US:,} µs")
    return latency


def call_report(*, calls: Any = None, errors: Any = None, latency_us: Any = None) -> CallReport | None:
    """The validated report, or None when the batch has none (an older client). Raises CallReportInvalid naming
    the field. Without `calls`, it is the timed calls plus the errors."""
    if calls is None and errors is None and latency_us is None:
        return None
    latency = np.empty(0) if latency_us is None else _latencies(latency_us)
    n_errors = 0 if errors is None else _count("errors", errors)
    n_calls = len(latency) + n_errors if calls is None else _count("calls", calls)
    if n_errors > n_calls:
        raise CallReportInvalid("errors", f"({n_errors}) cannot exceed calls ({n_calls})")
    if len(latency) > n_calls - n_errors:
        raise CallReportInvalid("latency_us", f"has {len(latency)} values for {n_calls - n_errors} successful calls")
    return CallReport(calls=n_calls, errors=n_errors, histogram=histogram_of(latency))


def percentile_us(histogram: np.ndarray, q: float) -> float | None:
    """The q-th quantile (0 < q < 1) of the latencies in `histogram`, interpolated geometrically in its bucket."""
    n = int(histogram.sum())
    if n == 0:
        return None
    rank = q * n
    cumulative = np.cumsum(histogram)
    i = int(np.searchsorted(cumulative, rank, side="left"))
    below = cumulative[i - 1] if i else 0
    fraction = (rank - below) / histogram[i]
    low = EDGES_US[i - 1] if i else LOWEST_EDGE_US / 2 ** (1 / BUCKETS_PER_OCTAVE)
    high = EDGES_US[i] if i < len(EDGES_US) else EDGES_US[-1] * 2 ** (1 / BUCKETS_PER_OCTAVE)
    return float(low * (high / low) ** fraction)


@dataclass(frozen=True)
class RankTest:
    u: float
    z: float
    p_value: float  # one-sided: the candidate's calls are slower


def mann_whitney_slower(candidate: np.ndarray, active: np.ndarray) -> RankTest:
    """Mann–Whitney U on two histograms over the same buckets: each bucket is a group of tied values, so U and
    its tie-corrected variance come from the counts alone (O(buckets), not O(calls)). Normal approximation:
    the guard only tests with hundreds of calls a side."""
    c, a = candidate.astype(np.float64), active.astype(np.float64)
    n_c, n_a = c.sum(), a.sum()
    active_below = np.concatenate([[0.0], np.cumsum(a)[:-1]])
    u = float((c * (active_below + 0.5 * a)).sum())  # pairs where the candidate is slower, ties as half
    n = n_c + n_a
    if n_c == 0 or n_a == 0:
        return RankTest(u, 0.0, 1.0)  # one side has no calls: nothing to compare
    ties = c + a
    variance = n_c * n_a / 12.0 * ((n + 1) - (ties**3 - ties).sum() / (n * (n - 1)))
    if variance <= 0:
        return RankTest(u, 0.0, 1.0)  # every call in one bucket: no evidence either way
    z = (u - n_c * n_a / 2.0) / np.sqrt(variance)
    return RankTest(u, float(z), float(stats.norm.sf(z)))
