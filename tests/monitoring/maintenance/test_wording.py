"""monitoring/maintenance/wording.py: settings and search steps in words."""

from __future__ import annotations

import onnx
import pytest
from sklearn.ensemble import RandomForestClassifier

from monitoring.maintenance.applicability import PARAMS
from monitoring.maintenance.compression import static_quantize
from monitoring.maintenance.compression.base import NotApplicable
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.maintenance.wording import SETTING_DEFAULTS, describe_trial, elapsed_words, job_settings, trial_progress
from tests.conftest import FEATURES, breast_cancer_split
from workers import distill, search


def test_a_search_step_reads_as_words():
    assert trial_progress("distill", {"temperature": 2.0, "hidden_units": 32}, index=12, total=12) == (
        "Trying distillation at T=2, 32 hidden units, 12 of 12"
    )
    assert trial_progress("int8_dynamic", {}, index=1, total=9) == "Trying int8 dynamic quantization, 1 of 9"
    assert describe_trial("prune", {"sparsity": 0.85}) == "magnitude pruning at 85% sparsity"


def test_job_settings_are_only_the_kinds_own_labelled_with_defaults_for_the_empty_ones():
    assert job_settings("distill", {"hidden_units": 32}) == [("Temperature", "2 (default)"), ("Student hidden units", "32")]
    assert job_settings("compress_int8", {}) == []
    assert job_settings("retrain", {"search_seconds": 60}) == [("Hyperparameter search budget", "60 s")]
    assert all(name in PARAMS[kind] for kind, defaults in SETTING_DEFAULTS.items() for name in defaults)


def test_the_defaults_shown_are_the_ones_the_workers_use():
    assert SETTING_DEFAULTS["distill"] == {"temperature": distill.DEFAULT_TEMPERATURE, "hidden_units": distill.DEFAULT_HIDDEN}
    assert SETTING_DEFAULTS["find_smaller"] == {"tolerance": search.DEFAULT_TOLERANCE}


@pytest.mark.parametrize(("seconds", "words"), [(0, "0 s"), (45.9, "45 s"), (185, "3 min 05 s"), (3720, "1 h 02 min")])
def test_elapsed_time_reads_as_words(seconds, words):
    assert elapsed_words(seconds) == words


def test_the_int8_static_refusal_names_int8_static_quantization():
    # A tree ensemble compiles to one ONNX-ML operator with no MatMul weights: nothing to quantize.
    X, y, _, _ = breast_cancer_split()
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y)
    model = onnx.load_model_from_string(estimator_to_onnx(forest, feature_names=FEATURES, class_labels=["0", "1"]))

    with pytest.raises(NotApplicable) as refusal:
        static_quantize.check(model)

    assert refusal.value.reason.startswith("Int8 static quantization (QDQ) does not apply")
    assert "dynamic" not in refusal.value.reason
