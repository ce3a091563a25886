"""The domain classifier finds a joint shift that per-feature tests cannot see, and names the features."""

from __future__ import annotations

import numpy as np

from monitoring.drift.multivariate import domain_classifier

NAMES = ["x", "y", "noise"]


def _correlated(n: int, rho: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    return np.column_stack([xy, rng.normal(size=n)])


def test_it_detects_a_change_in_correlation_and_ranks_the_features_that_carry_it():
    reference, current = _correlated(3000, 0.9, 0), _correlated(3000, -0.9, 1)

    result = domain_classifier(reference, current, feature_names=NAMES)

    assert result.drifted and result.auc > 0.9
    assert {r["feature"] for r in result.ranked[:2]} == {"x", "y"} and result.ranked[2]["feature"] == "noise"


def test_the_same_distribution_is_not_drift_and_the_verdict_is_deterministic():
    reference, current = _correlated(3000, 0.5, 2), _correlated(3000, 0.5, 3)

    first = domain_classifier(reference, current, feature_names=NAMES)
    second = domain_classifier(reference, current, feature_names=NAMES)

    assert not first.drifted and first.auc < 0.55
    assert first == second


def test_too_few_rows_give_no_verdict_instead_of_noise():
    result = domain_classifier(_correlated(3000, 0.5, 4), _correlated(10, 0.5, 5), feature_names=NAMES)

    assert (result.auc, result.drifted, result.ranked) == (0.5, False, [])
    assert "fewer than" in result.note
