"""Concept drift: a labelled drop is tested, not thresholded; without labels, performance is estimated."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from monitoring.drift.concept import accuracy_drop, calibrators, estimate_performance


def test_a_drop_is_significant_only_with_enough_evidence_and_matches_the_2x2_chi_square():
    big = accuracy_drop(baseline_correct=900, baseline_n=1000, current_correct=820, current_n=1000)
    small = accuracy_drop(baseline_correct=900, baseline_n=1000, current_correct=17, current_n=20)

    assert big.significant and big.ci_high < 0 and big.difference == pytest.approx(-0.08)
    assert not small.significant and small.ci_low < 0 < small.ci_high
    chi2 = stats.chi2_contingency(np.array([[900, 100], [820, 180]]), correction=False)
    assert big.p_value == pytest.approx(chi2.pvalue / 2, rel=1e-9)  # one-sided z-test = half the chi-square p


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
