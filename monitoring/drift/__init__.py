"""Drift between a reference profile and a current window: per feature, of predictions, multivariate and of
performance (concept drift). Pure computation, no Django: numpy in, dataclasses out.

- profile.py: the stored reference profile (sorted values, moments, bins, a row sample)
- numeric.py / categorical.py: exact per-feature statistics (KS, Wasserstein, PSI, Jensen-Shannon, chi-square)
- check.py: test selection, multiple-testing correction and the dataset verdict
- prediction.py: predicted classes and scores
- multivariate.py: the domain classifier
- concept.py: labelled performance drop and confidence-based performance estimation
"""

from monitoring.drift.check import (
    DriftConfig,
    DriftConfigError,
    DriftResult,
    FeatureDrift,
    FeatureRule,
    corrected_threshold,
    feature_drift,
)
from monitoring.drift.prediction import prediction_drift
from monitoring.drift.profile import ReferenceStats, build_profile

# A window smaller than this says too little to test; the check reports "no data" instead of a verdict.
MIN_CURRENT_ROWS = 30

__all__ = [
    "MIN_CURRENT_ROWS",
    "DriftConfig",
    "DriftConfigError",
    "DriftResult",
    "FeatureDrift",
    "FeatureRule",
    "ReferenceStats",
    "build_profile",
    "corrected_threshold",
    "feature_drift",
    "prediction_drift",
]
