"""The approval page's statistics, checked against statsmodels, scikit-learn and a row-level bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import ks_2samp, norm
from sklearn.metrics import f1_score
from statsmodels.stats.contingency_tables import mcnemar as statsmodels_mcnemar

from monitoring import comparison
from monitoring.comparison import (
    Comparison,
    bootstrap_f1_delta,
    bootstrap_f1_delta_rows,
    class_table,
    compare,
    mcnemar,
    pareto_front,
    row_bootstrap_deltas,
)
from monitoring.metrics import encode

LABELS = ["a", "b", "c"]


def _two_versions(n: int = 400, seed: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.choice(LABELS, size=n)
    active = np.where(rng.random(n) < 0.85, y, rng.choice(LABELS, size=n))
    candidate = np.where(rng.random(n) < 0.80, y, rng.choice(LABELS, size=n))
    return y, active, candidate


def test_mcnemar_matches_statsmodels_exact_test():
    y, active, candidate = _two_versions()
    a_right, c_right = active == y, candidate == y
    table = [[np.sum(a_right & c_right), np.sum(a_right & ~c_right)], [np.sum(~a_right & c_right), np.sum(~a_right & ~c_right)]]

    result = mcnemar(y, active, candidate)

    assert (result.only_active_right, result.only_candidate_right) == (table[0][1], table[1][0])
    assert result.p_value == pytest.approx(statsmodels_mcnemar(table, exact=True).pvalue, rel=1e-9)


def test_mcnemar_sees_no_difference_between_identical_answers():
    y, active, _ = _two_versions()

    assert mcnemar(y, active, active).p_value == 1.0


def test_bootstrap_interval_brackets_the_f1_change_measured_by_sklearn():
    y, active, candidate = _two_versions()
    expected = f1_score(y, candidate, labels=LABELS, average="macro") - f1_score(y, active, labels=LABELS, average="macro")

    interval = bootstrap_f1_delta(y, active, candidate, LABELS)

    assert interval.estimate == pytest.approx(expected, abs=1e-12)
    assert interval.low < expected < interval.high
    assert interval.high - interval.low < 0.2


def test_bootstrap_interval_excludes_zero_for_a_clearly_worse_candidate():
    y, active, _ = _two_versions(n=1000)
    rng = np.random.default_rng(0)
    worse = np.where(rng.random(len(y)) < 0.5, y, rng.choice(LABELS, size=len(y)))

    interval = bootstrap_f1_delta(y, active, worse, LABELS)

    assert interval.high < 0


def test_the_table_bootstrap_agrees_with_a_row_level_bootstrap():
    y, active, candidate = _two_versions(n=400, seed=5)
    resamples = 4000

    table = bootstrap_f1_delta(y, active, candidate, LABELS, resamples=resamples)
    rows = bootstrap_f1_delta_rows(y, active, candidate, LABELS, resamples=resamples)

    # The estimate is computed from the same counts with the same arithmetic: equal to the last bit.
    assert table.estimate == rows.estimate
    # Both draw from the same distribution (a resample of rows, counted into the table, is a multinomial draw),
    # so their end points differ only by Monte Carlo error. The 2.5 % quantile of R draws has a standard error
    # of sqrt(p (1 - p) / R) / f(q); with f from a normal fit of the row-level draws, and two independent
    # estimates, the difference has sqrt(2) times that. 4 of those: a seed fails this about once in 16,000.
    _, deltas = row_bootstrap_deltas(y, active, candidate, LABELS, resamples=resamples)
    sigma, p = deltas.std(), 0.025
    tolerance = 4 * np.sqrt(2) * np.sqrt(p * (1 - p) / resamples) / (norm.pdf(norm.ppf(p)) / sigma)
    assert abs(table.low - rows.low) < tolerance and abs(table.high - rows.high) < tolerance
    assert tolerance < 0.01  # tight enough to catch a wrong interval: the interval itself is about 0.09 wide
    # And the whole distribution, not just its tails.
    table_deltas = comparison.table_bootstrap_deltas(
        class_table(*(encode(v, LABELS) for v in (y, active, candidate)), len(LABELS)), resamples=resamples
    )
    assert ks_2samp(table_deltas, deltas).pvalue > 0.001


def test_the_table_bootstrap_draws_a_fixed_number_of_cells_whatever_the_number_of_rows():
    rng = np.random.default_rng(0)
    n = 1_000_000
    y = rng.integers(0, 3, n)
    active = np.where(rng.random(n) < 0.9, y, rng.integers(0, 3, n))
    candidate = np.where(rng.random(n) < 0.9, y, rng.integers(0, 3, n))

    table = class_table(y, active, candidate, 3)

    assert table.n_rows == n and len(table.count) <= 4**3
    interval = comparison.bootstrap_table_f1_delta(table)
    assert interval.low < interval.estimate < interval.high and interval.high - interval.low < 0.01


def test_a_value_that_is_no_label_is_never_right_and_never_counts_for_a_class():
    y = np.array(["a", "b", "zz"])
    active = np.array(["a", "zz", "zz"])
    candidate = np.array(["a", "b", "c"])

    result = compare(y, active, candidate, LABELS)

    assert result.accuracy_active == pytest.approx(1 / 3) and result.accuracy_candidate == pytest.approx(2 / 3)
    assert result.f1_active == pytest.approx(f1_score(y, active, labels=LABELS, average="macro", zero_division=0))
    assert result.f1_candidate == pytest.approx(f1_score(y, candidate, labels=LABELS, average="macro", zero_division=0))


def test_a_stored_comparison_reads_back_equal():
    y, active, candidate = _two_versions()
    result = compare(y, active, candidate, LABELS)

    assert Comparison.from_dict(json.loads(json.dumps(result.as_dict()))) == result


def test_compare_reports_agreement_and_per_class_changes():
    y = np.array(["a", "a", "b", "b", "c", "c"])
    active = np.array(["a", "a", "b", "b", "c", "a"])
    candidate = np.array(["a", "b", "b", "b", "c", "c"])

    result = compare(y, active, candidate, LABELS)

    assert result.agreement == pytest.approx(4 / 6)
    assert result.accuracy_active == result.accuracy_candidate == pytest.approx(5 / 6)
    by_label = {k.label: k for k in result.per_class}
    assert (by_label["a"].recall_active, by_label["a"].recall_candidate) == (1.0, 0.5)
    assert (by_label["c"].recall_active, by_label["c"].recall_candidate) == (0.5, 1.0)
    assert by_label["a"].support == 2
    assert result.f1_active == pytest.approx(f1_score(y, active, labels=LABELS, average="macro"))


def test_compare_refuses_predictions_on_different_rows():
    with pytest.raises(ValueError):
        compare(np.array(["a", "b"]), np.array(["a"]), np.array(["a", "b"]), LABELS)


def test_the_pareto_front_keeps_only_undominated_points():
    points = [
        (100, 1.0, 0.90),  # the original
        (30, 0.8, 0.89),   # smaller, faster, a little worse: on the front
        (30, 0.9, 0.88),   # dominated by the one above
        (20, 1.2, 0.80),   # smallest: on the front
        (120, 1.1, 0.85),  # dominated by the original
    ]

    assert pareto_front(points) == [0, 1, 3]
