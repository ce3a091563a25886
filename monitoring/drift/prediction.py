"""Prediction drift: has the model's output moved, in predicted classes and in its confidence? No Django here."""

from __future__ import annotations

import numpy as np

from monitoring.drift import categorical
from monitoring.drift.check import FeatureRule, compare_feature, decide_test
from monitoring.drift.profile import ReferenceStats, feature_profile


def prediction_drift(
    profile: ReferenceStats,
    predicted: np.ndarray | None,
    scores: np.ndarray | None = None,
    *,
    p_value: float = 0.05,
) -> dict:
    """Predicted-class shares (chi-square for small samples, Jensen-Shannon at 0.1 for large ones, the same
    rule as a categorical feature) and, when scores are given, the top-class probability as a numeric feature.
    Empty when the profile holds no predictions or the window has none."""
    if not profile.predicted_counts or predicted is None or len(predicted) == 0:
        return {}
    current_counts = categorical.counts_of(np.asarray(predicted).astype(str))
    comparison = categorical.align(profile.predicted_counts, current_counts)
    n_reference = int(comparison.reference_counts.sum())
    test = decide_test("categorical", n_reference, len(predicted), FeatureRule())
    chi2, chi2_p = categorical.chi_square(comparison)
    js, psi = categorical.distances(comparison)
    with_scores = profile.sorted_scores is not None and scores is not None and len(scores) > 0
    # Classes and scores are two tests of one question: Bonferroni keeps their family at p_value.
    alpha = p_value / 2 if with_scores else p_value
    if test == "chisquare":
        statistic, threshold, drifted = chi2, alpha, chi2_p <= alpha
    else:
        statistic, threshold, drifted = js, 0.1, js >= 0.1
    result = {
        "test": test,
        "classes": [str(c) for c in comparison.categories],
        "reference": (comparison.reference_counts / max(n_reference, 1)).round(6).tolist(),
        "current": (comparison.current_counts / len(predicted)).round(6).tolist(),
        "statistic": float(statistic),
        "p_value": float(chi2_p),
        "jensenshannon": float(js),
        "psi": float(psi),
        "threshold": threshold,
        "unseen": [str(c) for c in comparison.unseen],
        "classes_drifted": bool(drifted),
        "drifted": bool(drifted),
    }
    if with_scores:
        reference_scores = feature_profile("score", profile.sorted_scores)
        raw = compare_feature(reference_scores, np.asarray(scores, dtype=np.float64), FeatureRule(kind="numeric"), alpha)
        drifted_score = raw.p_value <= raw.threshold if raw.p_value is not None else raw.statistic >= raw.threshold
        result["score"] = {
            "test": raw.test,
            "statistic": raw.statistic,
            "p_value": raw.p_value,
            "threshold": raw.threshold,
            "drifted": bool(drifted_score and not raw.note),
            "statistics": raw.statistics,
            "histogram": raw.histogram,
        }
        result["drifted"] = bool(result["drifted"] or result["score"]["drifted"])
    return result


def prediction_drift_reason(result: dict) -> str:
    """What decided a prediction shift, each part with its own figure and threshold: a p-value is never shown
    beside a decision it did not make (large samples are judged by distance, where any p is tiny)."""
    reasons = []
    if result.get("classes_drifted"):
        if result["test"] == "chisquare":
            reasons.append(f"predicted classes: chi-square p = {result['p_value']:.2g} ≤ {result['threshold']:g}")
        else:
            reasons.append(
                f"predicted classes: Jensen-Shannon distance {result['jensenshannon']:.3f} ≥ {result['threshold']:g}"
                " (the rule for large samples)"
            )
    score = result.get("score") or {}
    if score.get("drifted"):
        if score.get("p_value") is not None:
            figure = f"{score['test']} p = {score['p_value']:.2g} ≤ {score['threshold']:g}"
        else:
            figure = f"{score['test']} {score['statistic']:.3g} ≥ {score['threshold']:g}"
        reasons.append(f"the model's confidence in its top class: {figure}")
    return "; ".join(reasons)
