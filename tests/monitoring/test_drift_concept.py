"""Concept drift: a labelled drop is tested, not thresholded; without labels, performance is estimated."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from monitoring.drift.concept import accuracy_drop, calibrators, estimate_performance


def test_a_drop_is_significant_only_with_enough_evidence():
    big = accuracy_drop(baseline_correct=900, baseline_n=1000, current_correct=820, current_n=1000)
    small = accuracy_drop(baseline_correct=900, baseline_n=1000, current_correct=17, current_n=20)

    assert big.significant and big.ci_high < 0 and big.difference == pytest.approx(-0.08)
    assert not small.significant and small.ci_low < 0 < small.ci_high
    se = np.sqrt(0.9 * 0.1 / 1000 + 0.82 * 0.18 / 1000)
    assert big.p_value == pytest.approx(2 * stats.norm.sf(0.08 / se), rel=1e-9)
    assert (big.ci_low, big.ci_high) == pytest.approx((-0.08 - 1.959964 * se, -0.08 + 1.959964 * se), rel=1e-6)


def test_the_case_the_one_sided_test_called_significant_beside_an_interval_spanning_zero_is_not_significant():
    # 90 % on 1,000 reference rows, 83 % on 100 labelled rows: a pooled one-sided test gave p = 0.015 while
    # the 95 % interval for the change was [-15 %, +0.6 %].
    drop = accuracy_drop(baseline_correct=900, baseline_n=1000, current_correct=83, current_n=100)

    assert drop.ci_low < 0 < drop.ci_high
    assert not drop.significant and drop.p_value > 0.05


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_significance_always_agrees_with_the_interval_it_is_shown_with(alpha):
    rng = np.random.default_rng(7)
    for _ in range(2000):
        baseline_n, current_n = rng.integers(1, 2000, size=2)
        baseline_correct, current_correct = rng.integers(0, baseline_n + 1), rng.integers(0, current_n + 1)
        drop = accuracy_drop(
            baseline_correct=int(baseline_correct), baseline_n=int(baseline_n), current_correct=int(current_correct),
            current_n=int(current_n), alpha=alpha,
        )
        assert drop.significant == (drop.ci_high < 0), drop
        if drop.ci_low != drop.ci_high:  # a degenerate (zero-spread) sample has no test to agree with
            assert drop.significant == (drop.p_value < alpha and drop.difference < 0), drop


def test_a_better_model_is_never_a_significant_drop_and_perfect_scores_are_defined():
    assert not accuracy_drop(baseline_correct=800, baseline_n=1000, current_correct=950, current_n=1000).significant
    same = accuracy_drop(baseline_correct=10, baseline_n=10, current_correct=10, current_n=10)
    assert (same.p_value, same.significant) == (1.0, False)
    with pytest.raises(ValueError):
        accuracy_drop(baseline_correct=0, baseline_n=0, current_correct=1, current_n=1)


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them, so the probabilities are calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([0.6, 0.6, 0.6], size=n)
    labels = np.array([rng.choice(3, p=row) for row in p])
    return p, labels


def test_estimated_accuracy_and_f1_match_the_realised_ones_when_probabilities_are_calibrated():
    p, labels = _calibrated(20_000, 0)

    estimate = estimate_performance(p)

    predicted = p.argmax(axis=1)
    assert estimate.accuracy == pytest.approx(np.mean(predicted == labels), abs=0.01)
    assert estimate.f1_macro == pytest.approx(f1_score(labels, predicted, average="macro"), abs=0.015)
    assert not estimate.calibrated


def test_calibration_on_labelled_reference_rows_corrects_an_overconfident_model():
    p, labels = _calibrated(20_000, 1)
    overconfident = p**3 / (p**3).sum(axis=1, keepdims=True)
    names = ["0", "1", "2"]
    maps = calibrators(overconfident[:10_000], labels[:10_000].astype(str), names)

    raw = estimate_performance(overconfident[10_000:])
    calibrated = estimate_performance(overconfident[10_000:], maps)

    truth = np.mean(overconfident[10_000:].argmax(axis=1) == labels[10_000:])
    assert raw.accuracy - truth > 0.05  # the raw scores promise too much
    assert calibrated.calibrated and calibrated.accuracy == pytest.approx(truth, abs=0.015)


def test_an_empty_window_estimates_nothing():
    assert estimate_performance(np.empty((0, 2))).n == 0
