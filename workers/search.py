"""The accuracy-aware "find a smaller model" search. No Django here.

Every applicable method is tried at each of its settings (and distillation when it fits); each result is scored on
the labelled evaluation rows against the source model. Results losing more than `tolerance` points of macro F1
are dropped; among the rest, the Pareto front of (size, latency, F1) is returned, with the smallest member of the
front as the one to register. One candidate per job: the front is kept in the job's result for the page to show,
so the approval list is not flooded with near-duplicates, each needing its own decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from monitoring.comparison import pareto_front
from monitoring.maintenance.compression.base import MLP, TREES, NotApplicable, graph_family, runner
from monitoring.maintenance.compression.methods import METHODS, applicability
from monitoring.maintenance.wording import trial_progress
from monitoring.metrics import classification_metrics
from monitoring.runtime import measure_latency
from workers.distill import distill

DEFAULT_TOLERANCE = 1.0  # points of macro F1
# Latency is the median of this many single-row calls: enough to rank candidates, quick enough to try ten.
LATENCY_CALLS = 100
DISTILL_SETTINGS = ({"temperature": 2.0, "hidden_units": 8}, {"temperature": 2.0, "hidden_units": 32})


@dataclass(frozen=True)
class Trial:
    method: str
    params: dict
    size_bytes: int
    latency_ms: float
    f1_macro: float
    accuracy: float
    kept: bool
    note: str = ""


@dataclass(frozen=True)
class SearchResult:
    baseline: Trial
    trials: list[Trial]
    front: list[int]  # indices into trials
    best: int | None  # index into trials of the smallest on the front
    tolerance: float

    def as_dict(self) -> dict:
        return {
            "baseline": asdict(self.baseline), "trials": [asdict(t) for t in self.trials],
            "front": self.front, "best": self.best, "tolerance": self.tolerance,
        }


def _score(data: bytes, X: np.ndarray, y: np.ndarray, labels: list[str]) -> tuple[float, float, float]:
    model = runner(data)
    predictions = model.predict(X)
    metrics = classification_metrics(y, predictions.labels, labels=labels)
    latency = measure_latency(model, X[:64], batch_size=1, warmup=10, calls=LATENCY_CALLS).p50_ms
    return metrics.f1_macro, metrics.accuracy, latency


def find_smaller(
    source: bytes, *, X_eval: np.ndarray, y_eval: np.ndarray, labels: list[str], calibration: np.ndarray | None,
    feature_names: list[str], tolerance: float = DEFAULT_TOLERANCE,
    tick: Callable[[str, float], None] = lambda message, share: None,
) -> tuple[SearchResult, dict[int, bytes]]:
    """Try everything that applies; return the result and the bytes of the trials on the front, by index."""
    X_eval = np.asarray(X_eval, dtype=np.float32)
    y_eval = np.asarray(y_eval).astype(str)
    f1, accuracy, latency = _score(source, X_eval, y_eval, labels)
    baseline = Trial("source", {}, len(source), latency, f1, accuracy, True)
    plan: list[tuple[str, dict]] = [
        (a.key, params)
        for a in applicability(source, has_calibration=calibration is not None)
        if a.applicable
        for params in METHODS[a.key].search_grid
    ]
    if graph_family(onnx.load_model_from_string(source)) in (MLP, TREES) and calibration is not None:
        plan += [("distill", params) for params in DISTILL_SETTINGS]
    trials: list[Trial] = []
    outputs: dict[int, bytes] = {}
    for i, (method, params) in enumerate(plan):
        tick(trial_progress(method, params, index=i + 1, total=len(plan)), i / max(len(plan), 1))
        started = time.monotonic()
        try:
            if method == "distill":
                data, _ = distill(source, calibration, feature_names=feature_names, **params)
            else:
                data, _ = METHODS[method].run(source, calibration, **params)
        except NotApplicable as exc:
            trials.append(Trial(method, params, 0, 0.0, 0.0, 0.0, False, exc.reason))
            continue
        f1_t, accuracy_t, latency_t = _score(data, X_eval, y_eval, labels)
        kept = f1_t >= f1 - tolerance / 100 and len(data) < len(source)
        note = "" if kept else f"F1 {f1_t:.3f} is more than {tolerance:g} points below {f1:.3f}"
        trials.append(Trial(method, params, len(data), latency_t, f1_t, accuracy_t, kept,
                            note or f"{time.monotonic() - started:.1f} s"))
        if kept:
            outputs[len(trials) - 1] = data
    kept_idx = [i for i, t in enumerate(trials) if t.kept]
    front_local = pareto_front([(trials[i].size_bytes, trials[i].latency_ms, trials[i].f1_macro) for i in kept_idx])
    front = [kept_idx[j] for j in front_local]
    best = min(front, key=lambda i: (trials[i].size_bytes, -trials[i].f1_macro)) if front else None
    return SearchResult(baseline, trials, front, best, tolerance), {i: outputs[i] for i in front}
