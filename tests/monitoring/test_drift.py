"""Feature and prediction drift: KS statistics equal scipy's, awkward columns never produce NaN."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from monitoring.drift import feature_drift, prediction_drift

NAMES = ["a", "b", "c"]


def _data(seed: int = 0, n: int = 500):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 3))


def _all_numbers_finite(result) -> bool:
    numbers = [v for f in result.features_as_dicts() for v in f.values() if isinstance(v, float)]
    numbers += [result.share_drifted]
    return all(math.isfinite(v) for v in numbers)


def test_ks_statistics_and_p_values_equal_scipys():
    reference, current = _data()
    current[:, 1] += 0.5

    result = feature_drift(reference, current, feature_names=NAMES)

    by_name = {f.feature: f for f in result.features}
    for j, name in enumerate(NAMES):
        expected = stats.ks_2samp(reference[:, j], current[:, j])
        assert by_name[name].statistic == pytest.approx(expected.statistic)
        assert by_name[name].p_value == pytest.approx(expected.pvalue)
    assert result.features[0].feature == "b" and result.features[0].drifted


def test_the_threshold_is_bonferroni_corrected_and_half_the_features_make_the_dataset_drift():
    reference, current = _data()
    current[:, :2] += 1.0

    result = feature_drift(reference, current, feature_names=NAMES, p_value=0.06)

    assert all(f.threshold == pytest.approx(0.02) for f in result.features)
    assert result.n_drifted == 2 and result.share_drifted == pytest.approx(2 / 3) and result.drifted


def test_the_same_distribution_does_not_drift():
    reference, current = _data()

    result = feature_drift(reference, current, feature_names=NAMES)

    assert result.n_drifted == 0 and not result.drifted


def test_a_constant_column_drifts_only_if_its_value_changes():
    reference, current = _data()
    reference[:, 0] = current[:, 0] = 3.0
    reference[:, 1], current[:, 1] = 1.0, 2.0

    result = {f.feature: f for f in feature_drift(reference, current, feature_names=NAMES).features}

    assert result["a"].statistic == 0.0 and result["a"].p_value == pytest.approx(1.0) and not result["a"].drifted
    assert result["b"].statistic == 1.0 and result["b"].drifted


def test_an_all_nan_column_is_not_drift_and_leaves_no_nan_in_the_result():
    reference, current = _data()
    current[:, 2] = np.nan
    reference[::7, 0] = np.nan  # scattered NaNs are ignored, not propagated

    result = feature_drift(reference, current, feature_names=NAMES)

    by_name = {f.feature: f for f in result.features}
    assert (by_name["c"].statistic, by_name["c"].p_value, by_name["c"].drifted) == (0.0, 1.0, False)
    assert by_name["c"].current_mean == 0.0
    assert _all_numbers_finite(result)
    json.dumps(result.features_as_dicts(), allow_nan=False)  # storable as JSON


def test_prediction_drift_compares_class_shares_with_chi_square():
    reference = np.array(["0"] * 500 + ["1"] * 500)
    shifted = np.array(["0"] * 100 + ["1"] * 400)

    result = prediction_drift(reference, shifted, p_value=0.05)

    assert result["classes"] == ["0", "1"] and result["current"] == [0.2, 0.8] and result["drifted"]
    expected = stats.chi2_contingency(np.array([[500, 500], [100, 400]]))
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert not prediction_drift(reference, reference[::2], p_value=0.05)["drifted"]
    assert prediction_drift(None, shifted, p_value=0.05) == {}
