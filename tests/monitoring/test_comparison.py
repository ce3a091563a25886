"""The approval page's statistics, checked against statsmodels and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score
from statsmodels.stats.contingency_tables import mcnemar as statsmodels_mcnemar

from monitoring.comparison import bootstrap_f1_delta, compare, mcnemar, pareto_front

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
