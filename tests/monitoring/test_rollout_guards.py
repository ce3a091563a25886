"""Rollout guards and instance assignment: pure functions on arrays."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.callstats import histogram_of
from monitoring.rollout import guards
from monitoring.rollout.assignment import serves_candidate
from monitoring.rollout.guards import CallTraffic, GuardConfig, GuardSetting, StageTraffic

RNG = np.random.default_rng(14)


def _probabilities(n: int, p_one: float, confidence: float = 0.85) -> tuple[np.ndarray, np.ndarray]:
    predicted = (RNG.random(n) < p_one).astype(np.int16)
    top = np.clip(RNG.normal(confidence, 0.05, n), 0.5, 1.0).astype(np.float32)
    proba = np.column_stack([np.where(predicted == 0, top, 1 - top), np.where(predicted == 1, top, 1 - top)])
    return predicted, proba


@pytest.mark.parametrize("share", [0.1, 0.25, 0.5])
def test_the_served_share_is_within_a_few_points_over_1000_instances(share):
    instances = [f"pod-{i}" for i in range(1000)]
    served = sum(serves_candidate(7, instance, share) for instance in instances) / len(instances)
    assert abs(served - share) < 0.03


def test_an_instance_on_the_candidate_stays_on_it_as_the_share_grows():
    instances = [f"host-{i}.example" for i in range(1000)]
    at_10 = {i for i in instances if serves_candidate(3, i, 0.1)}
    at_50 = {i for i in instances if serves_candidate(3, i, 0.5)}
    assert at_10 and at_10 <= at_50
    assert all(serves_candidate(3, i, 0.1) for i in at_10)  # the same answer every time it asks
    assert not any(serves_candidate(3, i, 0.0) for i in instances)
    assert all(serves_candidate(3, i, 1.0) for i in instances)


def test_a_candidate_that_predicts_one_class_breaches_the_class_shift_guard():
    active, _ = _probabilities(1000, 0.4)
    candidate = np.ones(500, dtype=np.int16)
    result = guards.class_shift(candidate, active, 2, GuardConfig().class_shift)
    assert result.verdict == "breach"
    assert result.value == pytest.approx(0.6, abs=0.05)
    assert result.p_value < 1e-10


def test_the_same_model_on_the_same_traffic_passes_every_guard():
    c_pred, c_proba = _probabilities(3000, 0.4)
    a_pred, a_proba = _probabilities(3000, 0.4)
    labels_c = np.where(RNG.random(3000) < 0.9, c_pred, 1 - c_pred)
    labels_a = np.where(RNG.random(3000) < 0.9, a_pred, 1 - a_pred)
    c_calls, a_calls = _calls(3000, errors=30), _calls(3000, errors=30)
    results = guards.evaluate_guards(
        StageTraffic(c_pred, c_proba, c_pred, labels_c, c_calls), StageTraffic(a_pred, a_proba, a_pred, labels_a, a_calls),
        n_classes=2,
    )
    assert [r.guard for r in results] == list(guards.GUARD_NAMES)
    assert [r.verdict for r in results] == ["pass"] * 6, [r.describe() for r in results]


def _calls(n: int, *, errors: int = 0, median_ms: float = 4.0, spread: float = 0.3) -> CallTraffic:
    """n calls whose latencies are log-normal around median_ms, `errors` of them failed (and so not timed)."""
    latency_us = median_ms * 1000 * np.exp(RNG.normal(0, spread, n - errors))
    return CallTraffic(histogram=histogram_of(latency_us), calls=n, errors=errors)


def test_a_slower_candidate_breaches_the_latency_guard_and_a_slightly_slower_one_does_not():
    setting = GuardConfig().latency_p95
    active = _calls(2000)
    slow = guards.latency_p95(_calls(500, median_ms=8.0), active, setting)
    assert slow.verdict == "breach", slow.describe()
    assert slow.value == pytest.approx(2.0, rel=0.15) and slow.p_value < 1e-10
    assert slow.figures["active_p95_ms"] == pytest.approx(4.0 * np.exp(1.645 * 0.3), rel=0.12)
    # 10 % slower on 20,000 calls a side: the test is sure of it, but the ratio is far under 1.5.
    slightly = guards.latency_p95(_calls(20_000, median_ms=4.4), _calls(20_000), setting)
    assert slightly.p_value < 1e-6 and slightly.verdict == "pass"


def test_a_candidate_twice_as_slow_on_a_few_calls_waits():
    result = guards.latency_p95(_calls(50, median_ms=8.0), _calls(2000), GuardConfig().latency_p95)
    assert (result.verdict, result.value, result.n_candidate) == ("wait", None, 50)
    assert guards.latency_p95(None, _calls(2000), GuardConfig().latency_p95).verdict == "wait"


def test_the_error_rate_guard_breaches_on_a_significant_rise_over_its_threshold():
    setting = GuardConfig().error_rate
    rise = guards.error_rate(_calls(400, errors=40), _calls(4000, errors=20), setting)
    assert rise.verdict == "breach" and rise.value == pytest.approx(0.095) and rise.p_value < 1e-10
    # 3 of 200 against 1 %: a rise of 0.5 points, not significant and under the threshold.
    assert guards.error_rate(_calls(200, errors=3), _calls(4000, errors=40), setting).verdict == "pass"
    # A candidate whose every call fails, with no rows at all to judge otherwise.
    all_fail = guards.error_rate(CallTraffic(np.zeros(96, dtype=np.int64), 300, 300), _calls(4000), setting)
    assert all_fail.verdict == "breach" and all_fail.value == 1.0


def test_errors_on_too_few_calls_wait():
    result = guards.error_rate(_calls(20, errors=20), _calls(4000), GuardConfig().error_rate)
    assert result.verdict == "wait" and result.figures == {"min_rows": 200}


def test_ten_rows_wait_instead_of_deciding():
    candidate = np.ones(10, dtype=np.int16)
    active = np.zeros(10, dtype=np.int16)
    results = guards.evaluate_guards(StageTraffic(candidate), StageTraffic(active), n_classes=2)
    assert {r.verdict for r in results} == {"wait"}
    assert [r.guard for r in guards.waiting_on(results)] == ["class_shift"]
    assert guards.breaches(results) == []


def test_a_small_significant_shift_below_the_threshold_does_not_abort():
    # 40 % vs 43 % ones on 200k rows each: chi-square says "different", the distance (0.03) is under 0.10.
    candidate = (RNG.random(200_000) < 0.43).astype(np.int16)
    active = (RNG.random(200_000) < 0.40).astype(np.int16)
    result = guards.class_shift(candidate, active, 2, GuardConfig().class_shift)
    assert result.p_value < 1e-6
    assert result.verdict == "pass"


def test_less_confident_scores_breach_the_score_and_estimated_accuracy_guards():
    _c_pred, c_proba = _probabilities(2000, 0.4, confidence=0.6)
    _a_pred, a_proba = _probabilities(2000, 0.4, confidence=0.9)
    config = GuardConfig()
    score = guards.score_shift(c_proba, a_proba, config.score_shift)
    estimate = guards.estimated_accuracy(c_proba, a_proba, config.estimated_accuracy)
    assert score.verdict == "breach" and score.value > 0.9
    assert estimate.verdict == "breach" and estimate.value == pytest.approx(0.3, abs=0.03)


def test_labelled_accuracy_breaches_only_on_a_significant_drop():
    truth = RNG.integers(0, 2, 1000)
    good = np.where(RNG.random(1000) < 0.92, truth, 1 - truth)
    bad = np.where(RNG.random(1000) < 0.75, truth, 1 - truth)
    setting = GuardConfig().labelled_accuracy
    drop = guards.labelled_accuracy(StageTraffic(bad, None, bad, truth), StageTraffic(good, None, good, truth), setting)
    assert drop.verdict == "breach" and drop.value == pytest.approx(0.17, abs=0.04)
    few = guards.labelled_accuracy(
        StageTraffic(bad[:50], None, bad[:50], truth[:50]), StageTraffic(good, None, good, truth), setting
    )
    assert few.verdict == "wait"


def test_guard_settings_are_laid_over_the_defaults_and_unknown_names_refused():
    config = GuardConfig.from_dict({"class_shift": {"threshold": 0.2}})
    assert config.class_shift == GuardSetting(threshold=0.2, min_rows=200)
    with pytest.raises(ValueError, match="unknown guard"):
        GuardConfig.from_dict({"latency": {"threshold": 1}})
