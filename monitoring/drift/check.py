"""One drift check: every feature against the reference profile, then the dataset verdict. No Django here."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from monitoring.drift import categorical, numeric
from monitoring.drift.profile import FeatureProfile, ReferenceStats

# Evidently's default rule, on both sides: while either sample has at most this many values a feature gets a
# p-value test (KS or chi-square); with more on both, any real-world shift is "significant", so a distance with
# a 0.1 threshold decides. Evidently looks at the reference alone; but a 70-row window against a large reference
# has normalised-Wasserstein sampling noise around 0.1-0.2, so a distance would flag noise as drift.
SMALL_SAMPLE_MAX = 1000
# A numeric column with at most this many distinct reference values is treated as categorical (Evidently's rule).
CATEGORICAL_MAX_UNIQUE = 5
P_VALUE_TESTS = {"ks", "chisquare"}
DISTANCE_THRESHOLDS = {"wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.2}  # psi 0.2: the usual "significant shift"
NUMERIC_TESTS = {"ks", "wasserstein", "psi", "jensenshannon"}
CATEGORICAL_TESTS = {"chisquare", "psi", "jensenshannon"}
CORRECTIONS = {"bonferroni", "bh", "none"}
HISTOGRAM_BINS = 30
# Below this many current values x features a check is a few milliseconds and threads only add overhead.
PARALLEL_MIN_VALUES = 200_000
# Features are compared this many at a time from one contiguous (transposed) block of the window: one column of a
# row-major window touches a cache line per value, 32 columns share them. 100k rows x 32 x 8 B = 25 MB per thread.
CHECK_CHUNK_FEATURES = 32


class DriftConfigError(ValueError):
    """A drift configuration that cannot be used; the message names the bad key and is user-facing."""


@dataclass(frozen=True)
class FeatureRule:
    kind: str | None = None  # "numeric" | "categorical"; None: decided from the reference
    test: str | None = None  # None: the default rule by sample size and kind
    threshold: float | None = None  # p-value (before correction) for p-value tests, else the distance


@dataclass(frozen=True)
class DriftConfig:
    """How a deployment wants drift judged. Stored as JSON on the deployment; every key optional."""

    p_value: float = 0.05  # family-wise significance of the p-value tests
    correction: str = "bonferroni"
    drift_share: float = 0.5  # the dataset drifts when at least this share of features does
    default: FeatureRule = field(default_factory=FeatureRule)  # applies to every feature
    features: dict[str, FeatureRule] = field(default_factory=dict)  # per-feature, over `default`
    multivariate_auc: float = 0.55  # the domain classifier's ROC-AUC at or above which the data moved

    @classmethod
    def from_json(cls, raw: dict | None, *, p_value: float = 0.05, feature_names: list[str] | None = None) -> DriftConfig:
        raw = dict(raw or {})
        unknown = set(raw) - {"p_value", "correction", "drift_share", "test", "threshold", "kind", "features", "multivariate_auc"}
        if unknown:
            raise DriftConfigError(f"Unknown drift settings: {sorted(unknown)}.")
        p = float(raw.get("p_value", p_value))
        share = float(raw.get("drift_share", 0.5))
        auc = float(raw.get("multivariate_auc", 0.55))
        correction = raw.get("correction", "bonferroni")
        if not 0 < p < 1:
            raise DriftConfigError("p_value must be between 0 and 1.")
        if not 0 < share <= 1:
            raise DriftConfigError("drift_share must be in (0, 1].")
        if not 0.5 < auc <= 1:
            raise DriftConfigError("multivariate_auc must be in (0.5, 1].")
        if correction not in CORRECTIONS:
            raise DriftConfigError(f"correction must be one of {sorted(CORRECTIONS)}.")
        per_feature = raw.get("features") or {}
        if not isinstance(per_feature, dict):
            raise DriftConfigError("features must map feature names to settings.")
        if feature_names is not None and set(per_feature) - set(feature_names):
            raise DriftConfigError(f"Drift settings name unknown features: {sorted(set(per_feature) - set(feature_names))}.")
        return cls(
            p_value=p,
            correction=correction,
            drift_share=share,
            default=_rule(raw, "drift settings"),
            features={name: _rule(rule, f"features.{name}") for name, rule in per_feature.items()},
            multivariate_auc=auc,
        )

    def rule_for(self, name: str) -> FeatureRule:
        own = self.features.get(name, FeatureRule())
        return FeatureRule(
            kind=own.kind or self.default.kind,
            test=own.test or self.default.test,
            threshold=own.threshold if own.threshold is not None else self.default.threshold,
        )


def _rule(raw: dict, where: str) -> FeatureRule:
    if not isinstance(raw, dict):
        raise DriftConfigError(f"{where} must be an object.")
    kind, test, threshold = raw.get("kind"), raw.get("test"), raw.get("threshold")
    if kind is not None and kind not in ("numeric", "categorical"):
        raise DriftConfigError(f"{where}: kind must be numeric or categorical.")
    if test is not None and test not in NUMERIC_TESTS | CATEGORICAL_TESTS:
        raise DriftConfigError(f"{where}: test must be one of {sorted(NUMERIC_TESTS | CATEGORICAL_TESTS)}.")
    if kind and test and test not in (NUMERIC_TESTS if kind == "numeric" else CATEGORICAL_TESTS):
        raise DriftConfigError(f"{where}: the {test} test does not apply to a {kind} feature.")
    if threshold is not None and (not isinstance(threshold, (int, float)) or not threshold > 0):
        raise DriftConfigError(f"{where}: threshold must be a positive number.")
    return FeatureRule(kind=kind, test=test, threshold=None if threshold is None else float(threshold))


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    test: str
    statistic: float  # of the test used: KS D, chi-square, normalised Wasserstein, PSI or JS distance
    p_value: float | None  # for p-value tests; None for distances
    threshold: float  # corrected p-value threshold, or the distance threshold
    drifted: bool
    moved: float  # Jensen-Shannon distance on reference-quantile bins: one scale to rank every feature by
    n_reference: int
    n_current: int
    reference_mean: float
    current_mean: float
    reference_std: float
    current_std: float
    missing_reference: float  # share of NaN/inf values
    missing_current: float
    statistics: dict  # every statistic computed for this feature, whichever test decided
    histogram: dict  # {"edges" | "categories", "reference", "current"}: shares, for the overlaid chart
    unseen: list  # [{"category", "count"}] for categorical features
    note: str  # why no verdict could be reached, e.g. no current values; "" otherwise


@dataclass(frozen=True)
class DriftResult:
    n_reference: int
    n_current: int
    features: list[FeatureDrift]  # drifted first, then by `moved`, largest first
    n_drifted: int
    share_drifted: float
    drift_share: float
    drifted: bool
    correction: str
    prediction_drift: dict

    def features_as_dicts(self) -> list[dict]:
        return [asdict(f) for f in self.features]


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


def decide_kind(profile: FeatureProfile, rule: FeatureRule) -> str:
    if rule.kind:
        return rule.kind
    return "categorical" if 0 < profile.n_unique <= CATEGORICAL_MAX_UNIQUE else "numeric"


def decide_test(kind: str, n_reference: int, n_current: int, rule: FeatureRule) -> str:
    if rule.test:
        return rule.test
    if min(n_reference, n_current) <= SMALL_SAMPLE_MAX:
        return "ks" if kind == "numeric" else "chisquare"
    return "wasserstein" if kind == "numeric" else "jensenshannon"


@dataclass(frozen=True)
class _Raw:
    """One feature's numbers before multiple-testing correction decides p-value verdicts."""

    name: str
    kind: str
    test: str
    statistic: float
    p_value: float | None
    threshold: float
    moved: float
    n_current: int  # finite current values; the window itself is not kept once its feature is compared
    current_mean: float
    current_std: float
    statistics: dict
    histogram: dict
    unseen: list
    note: str


def compare_feature(profile: FeatureProfile, current_column: np.ndarray, rule: FeatureRule, p_value: float) -> _Raw:
    reference = profile.sorted_values.astype(np.float64, copy=False)
    # Sorting before widening is the same order (float32 -> float64 is exact) at half the bytes to sort.
    current = np.sort(current_column[np.isfinite(current_column)]).astype(np.float64, copy=False)
    moments = (len(current), float(current.mean()) if len(current) else 0.0, float(current.std()) if len(current) else 0.0)
    kind = decide_kind(profile, rule)
    test = decide_test(kind, profile.n, len(current), rule)
    if test not in (NUMERIC_TESTS if kind == "numeric" else CATEGORICAL_TESTS):
        test = decide_test(kind, profile.n, len(current), FeatureRule())  # a deployment-wide test unfit for this kind
    threshold = rule.threshold if rule.threshold is not None else (
        p_value if test in P_VALUE_TESTS else DISTANCE_THRESHOLDS[test]
    )
    note = ""
    if len(reference) == 0 or len(current) == 0:
        note = "no values in the reference" if len(reference) == 0 else "no values in the current window"
        stats_ = {}
        histogram = numeric.histogram(reference, current, HISTOGRAM_BINS) if kind == "numeric" else {}
        return _Raw(profile.name, kind, test, 0.0, 1.0 if test in P_VALUE_TESTS else None, threshold, 0.0,
                    *moments, stats_, histogram, [], note)
    current_bins = numeric.binned_counts(current, profile.inner_edges)
    binned_js = numeric.jensen_shannon(profile.bin_counts, current_bins)
    unseen: list = []
    if kind == "numeric":
        r = numeric.ranks(reference, current)
        ks = numeric.ks_two_sample(reference, current, r)
        norm = max(profile.std, numeric.MIN_NORM_STD)
        stats_ = {
            "ks": ks.statistic,
            "ks_p_value": ks.p_value,
            "wasserstein": numeric.wasserstein(reference, current) / norm,
            "psi": numeric.psi(profile.bin_counts, current_bins),
            "jensenshannon": binned_js,
        }
        histogram = numeric.histogram(reference, current, HISTOGRAM_BINS)
        statistic = {"ks": ks.statistic}.get(test, stats_.get(test, 0.0))
        p = ks.p_value if test == "ks" else None
    else:
        comparison = categorical.align(categorical.counts_of(reference), categorical.counts_of(current))
        chi2, chi2_p = categorical.chi_square(comparison)
        js, psi = categorical.distances(comparison)
        stats_ = {"chisquare": chi2, "chisquare_p_value": chi2_p, "jensenshannon": js, "psi": psi}
        unseen = [
            {"category": c, "count": int(n)}
            for c, n in zip(comparison.categories, comparison.current_counts)
            if c in set(comparison.unseen)
        ]
        histogram = {
            "categories": [_label(c) for c in comparison.categories],
            "reference": (comparison.reference_counts / max(len(reference), 1)).round(6).tolist(),
            "current": (comparison.current_counts / max(len(current), 1)).round(6).tolist(),
        }
        statistic = stats_[test]
        p = chi2_p if test == "chisquare" else None
        binned_js = js
    stats_ = {k: _finite(v) for k, v in stats_.items()}
    return _Raw(profile.name, kind, test, _finite(statistic), p, threshold, _finite(binned_js), *moments, stats_,
                histogram, unseen, note)


def _label(category) -> str:
    if isinstance(category, float) and category.is_integer():
        return str(int(category))
    return str(category)


def corrected_threshold(p_values: list[float], alpha: float, correction: str) -> float:
    """The p-value threshold that keeps the family of tests at `alpha`: Bonferroni (family-wise error rate) or
    Benjamini-Hochberg (false discovery rate). A p-value at or below it is a discovery."""
    m = len(p_values)
    if m == 0 or correction == "none":
        return alpha
    if correction == "bonferroni":
        return alpha / m
    # BH: the largest k with p_(k) <= k * alpha / m; every p-value up to that cut is a discovery.
    ordered = np.sort(np.asarray(p_values))
    passing = np.flatnonzero(ordered <= np.arange(1, m + 1) * alpha / m)
    return float((passing[-1] + 1) * alpha / m) if len(passing) else alpha / m


def feature_drift(
    profile: ReferenceStats,
    current: np.ndarray,
    *,
    config: DriftConfig | None = None,
    prediction_drift: dict | None = None,
    threads: int | None = None,
) -> DriftResult:
    """Compare every feature of `current` (n x d, NaN allowed, n may be 0) with the reference profile."""
    config = config or DriftConfig()
    current = np.asarray(current)
    if current.dtype not in (np.float32, np.float64):
        current = current.astype(np.float64)  # float32 windows stay float32: a widened copy would double memory
    if current.ndim != 2 or current.shape[1] != len(profile.features):
        raise ValueError(f"current window has shape {list(current.shape)}; expected n x {len(profile.features)}")

    def chunk(j0: int) -> list[_Raw]:
        block = np.ascontiguousarray(current[:, j0 : j0 + CHECK_CHUNK_FEATURES].T)
        features = profile.features[j0 : j0 + CHECK_CHUNK_FEATURES]
        return [compare_feature(f, block[k], config.rule_for(f.name), config.p_value) for k, f in enumerate(features)]

    starts = range(0, len(profile.features), CHECK_CHUNK_FEATURES)
    workers = threads if threads is not None else min(os.cpu_count() or 1, 4)
    if workers > 1 and current.size >= PARALLEL_MIN_VALUES and len(starts) > 1:
        # numpy's sort, searchsorted and ufuncs release the GIL, so chunks run side by side on all cores.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            raws = [raw for part in pool.map(chunk, starts) for raw in part]
    elif workers > 1 and current.size >= PARALLEL_MIN_VALUES:
        # A narrow window (one chunk) with many rows: spread its features over the threads instead.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            raws = list(pool.map(
                lambda j: compare_feature(profile.features[j], current[:, j], config.rule_for(profile.features[j].name),
                                          config.p_value),
                range(len(profile.features)),
            ))
    else:
        raws = [raw for j0 in starts for raw in chunk(j0)]

    tested = [r.p_value for r in raws if r.test in P_VALUE_TESTS and not r.note]
    cut = corrected_threshold(tested, config.p_value, config.correction)
    results = []
    for raw, f in zip(raws, profile.features):
        if raw.test in P_VALUE_TESTS:
            # A per-feature significance scales the family's corrected threshold by the same factor.
            threshold = cut * raw.threshold / config.p_value
            drifted = not raw.note and raw.p_value <= threshold
        else:
            threshold = raw.threshold
            drifted = not raw.note and raw.statistic >= threshold
        results.append(
            FeatureDrift(
                feature=raw.name,
                kind=raw.kind,
                test=raw.test,
                statistic=raw.statistic,
                p_value=None if raw.p_value is None else _finite(raw.p_value),
                threshold=float(threshold),
                drifted=bool(drifted),
                moved=raw.moved,
                n_reference=f.n,
                n_current=raw.n_current,
                reference_mean=_finite(f.mean),
                current_mean=_finite(raw.current_mean),
                reference_std=_finite(f.std),
                current_std=_finite(raw.current_std),
                missing_reference=f.n_missing / max(f.n_values + f.n_missing, 1),
                missing_current=(len(current) - raw.n_current) / max(len(current), 1),
                statistics=raw.statistics,
                histogram=raw.histogram,
                unseen=raw.unseen,
                note=raw.note,
            )
        )
    results.sort(key=lambda r: (r.drifted, r.moved, r.statistic), reverse=True)
    n_features = len(results)
    n_drifted = sum(r.drifted for r in results)
    share = n_drifted / n_features if n_features else 0.0
    return DriftResult(
        n_reference=profile.n_rows,
        n_current=len(current),
        features=results,
        n_drifted=n_drifted,
        share_drifted=share,
        drift_share=config.drift_share,
        drifted=n_features > 0 and len(current) > 0 and share >= config.drift_share,
        correction=config.correction,
        prediction_drift=prediction_drift or {},
    )
