"""A prediction shift says which test decided it, with that test's own figure (issue 16: a shift was raised
"at p = 0.56" because a distance decided it while the alert quoted a p-value)."""

from __future__ import annotations

import numpy as np

from monitoring.drift.prediction import prediction_drift, prediction_drift_reason
from monitoring.drift.profile import build_profile


def _profile(predicted: np.ndarray):
    return build_profile(np.zeros((len(predicted), 1)), feature_names=["x"], predicted=predicted)


def test_a_large_sample_is_judged_by_distance_and_the_reason_quotes_the_distance_not_p():
    rng = np.random.default_rng(0)
    reference = rng.choice(["a", "b"], size=20_000, p=[0.5, 0.5])
    current = rng.choice(["a", "b"], size=20_000, p=[0.2, 0.8])

    result = prediction_drift(_profile(reference), current)

    assert result["test"] == "jensenshannon" and result["drifted"] and result["classes_drifted"]
    reason = prediction_drift_reason(result)
    assert reason.startswith("predicted classes: Jensen-Shannon distance") and "p =" not in reason


def test_a_small_sample_is_judged_by_chi_square_and_the_reason_quotes_its_p_below_the_threshold():
    reference = np.array(["a"] * 100 + ["b"] * 100)
    current = np.array(["a"] * 10 + ["b"] * 90)

    result = prediction_drift(_profile(reference), current)

    assert result["test"] == "chisquare" and result["drifted"]
    reason = prediction_drift_reason(result)
    assert "chi-square p = " in reason and result["p_value"] <= result["threshold"]


def test_no_shift_gives_no_reason():
    reference = np.array(["a"] * 100 + ["b"] * 100)

    result = prediction_drift(_profile(reference), reference.copy())

    assert not result["drifted"] and prediction_drift_reason(result) == ""
