"""Per-feature drift against a stored reference profile: exact statistics equal scipy's, every edge case has a
defined answer, the verdict follows the configured rule and the same data always gives the same report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from monitoring import drift
from monitoring.drift import numeric
from monitoring.drift.check import DriftConfig, DriftConfigError

NAMES = ["a", "b", "c"]


def _profile(X, names=NAMES, **kwargs) -> drift.ReferenceStats:
    # Every check reads the profile back from its stored bytes, as the worker does.
    return drift.ReferenceStats.from_bytes(drift.build_profile(X, feature_names=names, **kwargs).to_bytes())


def _by_name(result) -> dict:
    return {f.feature: f for f in result.features}


def _pairs():
    """(reference, current) samples: random, tied, constant, heavy-tailed, tiny and large."""
    rng = np.random.default_rng(42)
    yield rng.normal(size=300), rng.normal(0.2, 1, size=200)
    yield rng.normal(size=5000), rng.normal(size=5000)  # equal sizes: scipy's closed-form exact path
    yield rng.integers(0, 4, 800).astype(float), rng.integers(0, 5, 900).astype(float)  # ties everywhere
    yield np.full(400, 2.0), np.r_[np.full(300, 2.0), rng.normal(size=100)]  # constant reference
    yield rng.standard_cauchy(20_000) * 1e6, rng.standard_cauchy(15_000) * 1e6  # heavy tails, asymptotic path
    yield rng.pareto(1.1, 30_000), rng.pareto(1.3, 12_000)
    yield np.array([1.0]), np.array([2.0])  # tiny
    yield np.array([0.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.0, 2.0])
    yield np.round(rng.normal(size=50_000), 1), np.round(rng.normal(0.01, 1, size=40_000), 1)  # large, tied
    yield rng.normal(size=200_000), rng.normal(size=60)  # huge reference, tiny window


def _shifted_pairs():
    """Large samples whose p-values fall where scipy's finite-n distribution is slow (1e-3 down to 1e-300)."""
    rng = np.random.default_rng(7)
    for shift in (0.02, 0.05, 0.1, 0.5):
        yield rng.normal(size=300_000), rng.normal(shift, 1, size=200_000)


@pytest.mark.parametrize("pair", list(_shifted_pairs()), ids=lambda p: f"shift-{np.mean(p[1]):.2f}")
def test_tiny_ks_p_values_from_the_asymptotic_tail_equal_scipys_to_1e_9(pair):
    reference, current = pair

    ks = numeric.ks_two_sample(np.sort(reference), np.sort(current))

    expected = stats.ks_2samp(reference, current)
    assert ks.statistic == expected.statistic
    assert abs(ks.p_value - expected.pvalue) <= 1e-9
    # Same verdict at any significance level a user can set: both are below the smallest one.
    assert (ks.p_value < 1e-9) == (expected.pvalue < 1e-9)


@pytest.mark.parametrize("pair", list(_pairs()), ids=lambda p: f"{len(p[0])}x{len(p[1])}")
def test_ks_statistic_and_p_value_equal_scipys_to_1e_9(pair):
    reference, current = pair

    ks = numeric.ks_two_sample(np.sort(reference), np.sort(current))

    expected = stats.ks_2samp(reference, current)
    assert abs(ks.statistic - expected.statistic) <= 1e-9
    assert abs(ks.p_value - expected.pvalue) <= 1e-9


@pytest.mark.parametrize("pair", list(_pairs()), ids=lambda p: f"{len(p[0])}x{len(p[1])}")
def test_wasserstein_equals_scipys_to_1e_9(pair):
    reference, current = pair

    ours = numeric.wasserstein(np.sort(reference), np.sort(current))

    expected = stats.wasserstein_distance(reference, current)
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_the_report_carries_scipys_ks_and_wasserstein_normalised_by_the_reference_std():
    rng = np.random.default_rng(1)
    reference, current = rng.normal(size=(3000, 3)), rng.normal(size=(2500, 3))
    current[:, 1] = current[:, 1] * 2 + 0.3

    result = drift.feature_drift(_profile(reference.astype(np.float32)), current)

    for j, name in enumerate(NAMES):
        ref32 = reference[:, j].astype(np.float32).astype(np.float64)
        f = _by_name(result)[name]
        expected_ks = stats.ks_2samp(ref32, current[:, j])
        assert abs(f.statistics["ks"] - expected_ks.statistic) <= 1e-9
        assert abs(f.statistics["ks_p_value"] - expected_ks.pvalue) <= 1e-9
        expected_w = stats.wasserstein_distance(ref32, current[:, j]) / ref32.std()
        assert f.statistics["wasserstein"] == pytest.approx(expected_w, rel=1e-9)
    assert result.features[0].feature == "b" and result.features[0].drifted and result.n_drifted == 1


def test_psi_and_jensen_shannon_use_reference_decile_bins():
    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=(5000, 1)), rng.normal(0.5, 1, size=(4000, 1))

    f = drift.feature_drift(_profile(reference, ["x"]), current).features[0]

    edges = np.quantile(reference[:, 0], np.linspace(0, 1, 11)[1:-1])
    ref_counts = np.bincount(np.searchsorted(edges, reference[:, 0], side="left"), minlength=10)
    cur_counts = np.bincount(np.searchsorted(edges, current[:, 0], side="left"), minlength=10)
    p, q = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    assert f.statistics["psi"] == pytest.approx(np.sum((q - p) * np.log(q / p)), rel=1e-9)
    assert f.statistics["jensenshannon"] == pytest.approx(distance.jensenshannon(p, q, base=2), rel=1e-9)


def test_categorical_chi_square_equals_scipys_and_unseen_categories_are_reported():
    rng = np.random.default_rng(3)
    reference = rng.choice([0.0, 1.0, 2.0], size=(600, 1), p=[0.5, 0.3, 0.2])
    current = rng.choice([0.0, 1.0, 2.0, 7.0], size=(400, 1), p=[0.3, 0.3, 0.2, 0.2])

    f = drift.feature_drift(_profile(reference, ["colour"]), current).features[0]

    table = np.array([[np.sum(reference == v) for v in (0, 1, 2, 7)], [np.sum(current == v) for v in (0, 1, 2, 7)]])
    expected = stats.chi2_contingency(table)
    assert f.kind == "categorical" and f.test == "chisquare"
    assert abs(f.statistic - expected.statistic) <= 1e-9 and abs(f.p_value - expected.pvalue) <= 1e-9
    assert f.drifted
    assert f.unseen == [{"category": 7.0, "count": int(np.sum(current == 7.0))}]
    assert f.histogram["categories"] == ["0", "1", "2", "7"] and f.histogram["reference"][3] == 0.0


def test_small_samples_get_p_value_tests_and_large_ones_distances_with_a_0_1_threshold():
    rng = np.random.default_rng(4)
    small, large = rng.normal(size=(1000, 1)), rng.normal(size=(1001, 1))
    categorical_small, categorical_large = rng.integers(0, 3, (1000, 1)), rng.integers(0, 3, (5000, 1))
    current, small_window = rng.normal(size=(2000, 1)), rng.normal(size=(70, 1))

    assert drift.feature_drift(_profile(small, ["x"]), current).features[0].test == "ks"
    big = drift.feature_drift(_profile(large, ["x"]), current).features[0]
    assert (big.test, big.threshold, big.p_value) == ("wasserstein", 0.1, None)
    # A small window against a large reference: distances would mostly measure sampling noise.
    assert drift.feature_drift(_profile(large, ["x"]), small_window).features[0].test == "ks"
    assert drift.feature_drift(_profile(categorical_small, ["x"]), current.round() % 3).features[0].test == "chisquare"
    assert drift.feature_drift(_profile(categorical_large, ["x"]), current.round() % 3).features[0].test == "jensenshannon"


def test_a_large_sample_does_not_drift_on_a_tiny_shift_but_does_on_a_real_one():
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(200_000, 2))
    current = rng.normal(size=(200_000, 2))
    current[:, 0] += 0.03  # KS calls this significant; normalised Wasserstein says 0.03, below 0.1
    current[:, 1] += 0.5

    by_name = _by_name(drift.feature_drift(_profile(reference, ["tiny", "real"]), current))

    assert by_name["tiny"].statistics["ks_p_value"] < 1e-6 and not by_name["tiny"].drifted
    assert by_name["real"].drifted and by_name["real"].statistic == pytest.approx(0.5, abs=0.02)


def test_tests_and_thresholds_can_be_overridden_per_deployment_and_per_feature():
    rng = np.random.default_rng(6)
    reference, current = rng.normal(size=(5000, 3)), rng.normal(size=(5000, 3))
    current[:, 0] += 0.15
    config = DriftConfig.from_json(
        {"test": "psi", "threshold": 0.01, "features": {"b": {"test": "ks", "threshold": 0.01}, "c": {"kind": "categorical"}}},
        feature_names=NAMES,
    )

    by_name = _by_name(drift.feature_drift(_profile(reference), current, config=config))

    assert (by_name["a"].test, by_name["a"].threshold, by_name["a"].drifted) == ("psi", 0.01, True)
    assert by_name["b"].test == "ks" and by_name["b"].threshold == pytest.approx(0.01)  # the only p-value test
    assert by_name["c"].kind == "categorical" and by_name["c"].test == "psi"


@pytest.mark.parametrize(
    "raw",
    [{"test": "anova"}, {"correction": "holm"}, {"p_value": 2}, {"features": {"nope": {}}},
     {"features": {"a": {"kind": "categorical", "test": "ks"}}}, {"threshold": -1}, {"colour": 1}],
)
def test_it_rejects_a_drift_configuration_it_cannot_use(raw):
    with pytest.raises(DriftConfigError):
        DriftConfig.from_json(raw, feature_names=NAMES)


def test_bonferroni_divides_the_significance_and_benjamini_hochberg_cuts_at_the_largest_passing_rank():
    p_values = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]

    assert drift.corrected_threshold(p_values, 0.05, "bonferroni") == pytest.approx(0.005)
    assert drift.corrected_threshold(p_values, 0.05, "bh") == pytest.approx(0.01)  # 0.008 <= 2 * 0.05 / 10
    assert drift.corrected_threshold(p_values, 0.05, "none") == 0.05
    assert drift.corrected_threshold([], 0.05, "bonferroni") == 0.05


def test_the_threshold_is_corrected_across_p_value_tests_and_half_the_features_make_the_dataset_drift():
    rng = np.random.default_rng(7)
    reference, current = rng.normal(size=(500, 3)), rng.normal(size=(500, 3))
    current[:, :2] += 1.0

    result = drift.feature_drift(_profile(reference), current, config=DriftConfig(p_value=0.06))

    assert all(f.threshold == pytest.approx(0.02) for f in result.features)
    assert result.n_drifted == 2 and result.share_drifted == pytest.approx(2 / 3) and result.drifted


def _all_numbers_finite(result) -> bool:
    def walk(value):
        if isinstance(value, float):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v)

    return all(math.isfinite(v) for v in walk(result.features_as_dicts())) and math.isfinite(result.share_drifted)


def test_constant_all_nan_and_empty_columns_give_defined_results_never_nan():
    rng = np.random.default_rng(8)
    reference, current = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))
    reference[:, 0] = current[:, 0] = 3.0  # constant, unchanged
    reference[:, 1], current[:, 1] = 1.0, 2.0  # constant, moved
    current[:, 2] = np.nan  # nothing to compare
    reference[::7, 3] = np.nan  # scattered NaNs are ignored, and counted

    result = drift.feature_drift(_profile(reference, list("wxyz")), current)

    by_name = _by_name(result)
    assert not by_name["w"].drifted and by_name["w"].statistic == 0.0
    assert by_name["x"].drifted
    assert (by_name["y"].drifted, by_name["y"].note, by_name["y"].n_current) == (False, "no values in the current window", 0)
    assert by_name["z"].missing_reference == pytest.approx(286 / 2000)
    assert _all_numbers_finite(result)
    json.dumps(result.features_as_dicts(), allow_nan=False)  # storable as JSON


def test_an_empty_window_and_an_all_nan_reference_are_not_drift():
    reference = np.full((50, 3), np.nan)
    reference[:, 0] = np.arange(50)

    empty = drift.feature_drift(_profile(reference), np.empty((0, 3)))
    one_row = drift.feature_drift(_profile(reference), np.ones((1, 3)))

    assert not empty.drifted and empty.n_drifted == 0 and _all_numbers_finite(empty)
    assert _by_name(one_row)["b"].note == "no values in the reference" and _all_numbers_finite(one_row)


def test_the_same_data_gives_the_same_report_whatever_the_threads():
    rng = np.random.default_rng(9)
    reference, current = rng.normal(size=(60_000, 4)), rng.standard_t(3, size=(60_000, 4))
    profile = _profile(reference, list("wxyz"))

    one = drift.feature_drift(profile, current, threads=1).features_as_dicts()
    two = drift.feature_drift(profile, current, threads=2).features_as_dicts()
    again = drift.feature_drift(_profile(reference, list("wxyz")), current, threads=2).features_as_dicts()

    assert json.dumps(one) == json.dumps(two) == json.dumps(again)


def test_the_profile_round_trips_through_bytes_and_keeps_the_reference_sorted():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(30_000, 2)).astype(np.float32)
    labels = rng.choice(["cat", "dog"], size=30_000)

    profile = _profile(X, ["p", "q"], labels=labels, predicted=labels, scores=rng.random(30_000))

    assert profile.n_rows == 30_000 and profile.sample.shape == (20_000, 2)
    assert np.array_equal(profile.features[1].sorted_values, np.sort(X[:, 1]))
    assert profile.features[0].bin_counts.sum() == 30_000 and len(profile.features[0].bin_counts) == 10
    assert set(profile.predicted_counts) == {"cat", "dog"} and len(profile.sample_labels) == 20_000


def test_prediction_drift_compares_class_shares_and_the_score_distribution():
    reference = np.array(["0"] * 500 + ["1"] * 500)
    profile = _profile(np.zeros((1000, 1)), ["x"], predicted=reference, scores=np.linspace(0.5, 1, 1000))
    shifted = np.array(["0"] * 100 + ["1"] * 400)

    result = drift.prediction_drift(profile, shifted, np.linspace(0.5, 0.7, 500))

    assert result["classes"] == ["0", "1"] and result["current"] == [0.2, 0.8] and result["drifted"]
    expected = stats.chi2_contingency(np.array([[500, 500], [100, 400]]))
    assert result["p_value"] == pytest.approx(expected.pvalue, abs=1e-12) and result["test"] == "chisquare"
    assert result["score"]["test"] == "ks" and result["score"]["drifted"]
    steady = drift.prediction_drift(profile, reference[::2], np.linspace(0.5, 1, 500))
    assert not steady["drifted"] and not steady["score"]["drifted"]
    assert drift.prediction_drift(profile, np.array([], dtype=str)) == {}


def test_benjamini_hochberg_finds_more_of_many_small_shifts_than_bonferroni():
    rng = np.random.default_rng(11)
    names = [f"f{j}" for j in range(20)]
    reference, current = rng.normal(size=(800, 20)), rng.normal(size=(800, 20))
    current[:, :10] += 0.12  # ten modest shifts among twenty features

    bonferroni = drift.feature_drift(_profile(reference, names), current)
    bh = drift.feature_drift(_profile(reference, names), current, config=DriftConfig.from_json({"correction": "bh"}))

    assert bh.correction == "bh" and bh.n_drifted > bonferroni.n_drifted
    assert {f.feature for f in bh.features if f.drifted} <= {f"f{j}" for j in range(10)}
    assert all(f.p_value <= f.threshold for f in bh.features if f.drifted)


def test_a_wide_reference_keeps_one_row_sample_per_feature_and_its_statistics_equal_scipys_on_it():
    rng = np.random.default_rng(15)
    X = rng.normal(size=(20_000, 3))  # float64: no two values alike, so each kept value names its row
    X[::10, 2] = np.nan
    current = rng.normal(0.05, 1, size=(3_000, 3))
    stored = drift.build_profile(X, feature_names=NAMES, values_per_feature=5_000).to_bytes()
    profile = drift.ReferenceStats.from_bytes(stored)

    result = _by_name(drift.feature_drift(profile, current))

    row_of = [{v: i for i, v in enumerate(X[:, j])} for j in range(3)]
    kept_rows = [sorted(row_of[j][v] for v in profile.features[j].sorted_values) for j in range(3)]
    assert len(kept_rows[0]) == 5_000 and kept_rows[0] == kept_rows[1]  # the same rows for every feature
    assert set(kept_rows[2]) <= set(kept_rows[0])  # ... minus the missing values
    assert sum(f.n for f in profile.features) <= 3 * 5_000  # the stored values are bounded by the cap
    for j, name in enumerate(NAMES):
        kept = profile.features[j].sorted_values.astype(np.float64)
        column = X[:, j][np.isfinite(X[:, j])].astype(np.float64)
        ks = stats.ks_2samp(kept, current[:, j])
        assert result[name].statistics["ks"] == ks.statistic
        assert abs(result[name].statistics["ks_p_value"] - ks.pvalue) <= 1e-9
        w = stats.wasserstein_distance(kept, current[:, j]) / column.std()
        assert math.isclose(result[name].statistics["wasserstein"], w, rel_tol=1e-9)
        # moments, bins and missing shares describe the whole reference, not the sample
        assert profile.features[j].bin_counts.sum() == len(column)
        assert result[name].reference_mean == pytest.approx(column.mean(), rel=1e-12)
        assert result[name].n_reference == len(kept)
    assert result["c"].missing_reference == pytest.approx(0.1)


def test_a_reference_within_the_budget_is_kept_whole():
    X = np.random.default_rng(1).normal(size=(50_000, 3))

    profile = _profile(X)

    for j in range(3):
        assert np.array_equal(profile.features[j].sorted_values, np.sort(X[:, j]))


def test_a_float32_window_wider_than_a_chunk_gives_the_report_of_its_float64_copy_on_any_threads():
    from monitoring.drift import check

    rng = np.random.default_rng(3)
    n_features = check.CHECK_CHUNK_FEATURES + 8
    names = [f"f{j}" for j in range(n_features)]
    profile = _profile(rng.normal(size=(8_000, n_features)).astype(np.float32), names=names)
    window = rng.normal(size=(6_000, n_features)).astype(np.float32)
    window[:, -1] += 0.3
    window[::7, 3] = np.nan
    assert window.size >= check.PARALLEL_MIN_VALUES  # the threaded path

    threaded = drift.feature_drift(profile, window, threads=2).features_as_dicts()
    widened = drift.feature_drift(profile, window.astype(np.float64), threads=1).features_as_dicts()

    assert threaded == widened
    last = {f["feature"]: f for f in threaded}[names[-1]]
    expected = stats.ks_2samp(profile.features[-1].sorted_values.astype(np.float64), window[:, -1].astype(np.float64))
    assert last["statistics"]["ks"] == expected.statistic and last["drifted"]


def test_a_loaded_profile_views_its_stored_bytes_instead_of_copying_them():
    import tracemalloc

    X = np.random.default_rng(5).normal(size=(200_000, 3)).astype(np.float32)
    data = drift.build_profile(X, feature_names=NAMES).to_bytes()

    tracemalloc.start()
    profile = drift.ReferenceStats.from_bytes(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert peak < 0.1 * len(data)
    assert np.array_equal(profile.features[1].sorted_values, np.sort(X[:, 1]))
