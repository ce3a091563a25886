"""monitoring/callstats.py: the client's calls as a fixed-bucket histogram, its percentiles and rank test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitoring import callstats
from monitoring.callstats import CallReportInvalid, call_report, histogram_of, mann_whitney_slower, percentile_us

RNG = np.random.default_rng(14)


@pytest.mark.parametrize("median_us", [40.0, 3_000.0, 250_000.0])
def test_the_p95_read_from_the_histogram_is_within_a_bucket_of_the_exact_one(median_us):
    latency = median_us * np.exp(RNG.normal(0, 0.5, 50_000))
    estimate = percentile_us(histogram_of(latency), 0.95)
    assert estimate == pytest.approx(np.percentile(latency, 95), rel=0.10)


def test_latencies_beyond_the_edges_land_in_the_end_buckets():
    histogram = histogram_of(np.array([0.0, 5.0, 1e9]))
    assert histogram.sum() == 3 and histogram[0] == 2 and histogram[-1] == 1
    assert len(histogram) == callstats.N_BUCKETS
    assert percentile_us(np.zeros(callstats.N_BUCKETS, dtype=np.int64), 0.95) is None


def test_the_rank_test_on_histograms_agrees_with_scipys_on_the_binned_values():
    active = 3000 * np.exp(RNG.normal(0, 0.3, 800))
    candidate = 3300 * np.exp(RNG.normal(0, 0.3, 300))
    ours = mann_whitney_slower(histogram_of(candidate), histogram_of(active))
    # scipy on each value replaced by its bucket: the same ties, so the same U and (asymptotic) p.
    binned = stats.mannwhitneyu(np.searchsorted(callstats.EDGES_US, candidate, side="right"),
                                np.searchsorted(callstats.EDGES_US, active, side="right"),
                                alternative="greater", method="asymptotic", use_continuity=False)
    assert ours.u == pytest.approx(binned.statistic)
    assert ours.p_value == pytest.approx(binned.pvalue, rel=1e-6)


def test_identical_calls_give_no_evidence():
    same = histogram_of(np.full(500, 1000.0))
    assert mann_whitney_slower(same, same).p_value == 1.0


def test_a_report_counts_the_timed_calls_and_the_errors():
    report = call_report(latency_us=[100, 250.5, 4000], errors=2)
    assert report is not None and (report.calls, report.errors, int(report.histogram.sum())) == (5, 2, 3)
    assert call_report() is None  # an older client: nothing reported
    assert len(report.histogram_bytes()) == 4 * callstats.N_BUCKETS


@pytest.mark.parametrize(("fields", "field"), [
    ({"calls": -1}, "calls"),
    ({"calls": True}, "calls"),
    ({"calls": "7"}, "calls"),
    ({"calls": 10**12}, "calls"),
    ({"calls": 2, "errors": 3}, "errors"),
    ({"errors": 1.5}, "errors"),
    ({"latency_us": [1.0, float("nan")]}, "latency_us"),
    ({"latency_us": [-3]}, "latency_us"),
    ({"latency_us": [1e12]}, "latency_us"),
    ({"latency_us": "fast"}, "latency_us"),
    ({"latency_us": [1, "2"]}, "latency_us"),
    ({"latency_us": [1, 2, 3], "calls": 3, "errors": 1}, "latency_us"),
    ({"latency_us": np.zeros((2, 2))}, "latency_us"),
    ({"calls": np.array([1, 2])}, "calls"),
    ({"calls": np.array(2.0)}, "calls"),
])
def test_a_bad_report_is_refused_naming_the_field(fields, field):
    with pytest.raises(CallReportInvalid) as refused:
        call_report(**fields)
    assert refused.value.field == field


def test_no_calls_on_one_side_give_no_evidence():
    assert mann_whitney_slower(histogram_of(np.full(3, 1000.0)), histogram_of(np.empty(0))).p_value == 1.0
