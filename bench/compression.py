"""Every compression method (and distillation) on every demo model: size, accuracy, F1 and latency, in one run.

    .venv/bin/python bench/compression.py [--quick]

The baseline for each row is the demo model it was made from, measured in the same run on the same held-out rows
(the demo's own train/test split). Latency ratios are candidate ÷ baseline of the median call time at batch 1 and
batch 64 (below 1 is faster); a method that does not fit the model prints why instead of numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

import django

django.setup()

import numpy as np
import onnx
from threadpoolctl import threadpool_limits

from monitoring.maintenance.compression.base import MLP, TREES, NotApplicable, graph_family, runner
from monitoring.maintenance.compression.methods import METHODS
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.metrics import classification_metrics
from monitoring.runtime import measure_latency
from workers.demo import DEMO_MODELS, fit, load_split
from workers.distill import distill

ROUNDS = 5


def _quality(data: bytes, X: np.ndarray, y: np.ndarray, labels: list[str]) -> dict:
    metrics = classification_metrics(y, runner(data).predict(X).labels, labels=labels)
    return {"size": len(data), "accuracy": metrics.accuracy, "f1": metrics.f1_macro}


def _latency_ratio(base: bytes, candidate: bytes, X: np.ndarray, *, batch: int, calls: int) -> tuple[float, float]:
    """(baseline p50 ms, candidate p50 / baseline p50), timed in alternating rounds so that drift in the machine's
    load hits both alike: measured one after the other, whichever went first looked faster on this shared box."""
    a, b = runner(base), runner(candidate)
    per_round = max(calls // ROUNDS, 10)
    times_a, times_b = [], []
    for _ in range(ROUNDS):
        times_a.append(measure_latency(a, X, batch_size=batch, warmup=5, calls=per_round).p50_ms)
        times_b.append(measure_latency(b, X, batch_size=batch, warmup=5, calls=per_round).p50_ms)
    return float(np.median(times_a)), float(np.median(times_b) / np.median(times_a))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed calls (< 1 min)")
    args = parser.parse_args()
    calls = 60 if args.quick else 600
    started = time.monotonic()
    print("| model | method | size (bytes) | size ratio | Δ accuracy (points) | Δ F1 (points) | latency ratio b1 | latency ratio b64 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with threadpool_limits(limits=1):
        for demo in DEMO_MODELS:
            split = load_split(demo)
            estimator = fit(demo.estimator, split)
            labels = [str(c) for c in estimator.classes_]
            source = estimator_to_onnx(estimator, feature_names=split.feature_names, class_labels=labels)
            X_train, X_test = split.X_train.astype(np.float32), split.X_test.astype(np.float32)
            base = _quality(source, X_test, split.y_test, labels)
            b1, _ = _latency_ratio(source, source, X_test, batch=1, calls=calls)
            b64, _ = _latency_ratio(source, source, X_test, batch=64, calls=calls // 4)
            print(f"| {demo.slug} | (baseline) | {base['size']:,} | 1.00 | acc {base['accuracy']:.4f} | "
                  f"F1 {base['f1']:.4f} | {b1:.4f} ms | {b64:.4f} ms |")
            family = graph_family(onnx.load_model_from_string(source))
            trials = [(key, params) for key, method in METHODS.items() for params in method.search_grid]
            trials.append(("distill", {"temperature": 2.0, "hidden_units": 8}))
            for key, params in trials:
                name = key + ("" if not params else " " + ",".join(f"{k}={v}" for k, v in params.items()))
                try:
                    if key == "distill" and family not in (MLP, TREES):
                        raise NotApplicable("Distillation does not apply: a linear model is already as small as a student.")
                    if key == "distill":
                        data, _ = distill(source, X_train, feature_names=split.feature_names, **params)
                    else:
                        data, _ = METHODS[key].run(source, X_train, **params)
                except NotApplicable as exc:
                    print(f"| {demo.slug} | {name} | n/a: {exc.reason[:110]}… | | | | | |")
                    continue
                m = _quality(data, X_test, split.y_test, labels)
                _, r1 = _latency_ratio(source, data, X_test, batch=1, calls=calls)
                _, r64 = _latency_ratio(source, data, X_test, batch=64, calls=calls // 4)
                print(
                    f"| {demo.slug} | {name} | {m['size']:,} | {m['size'] / base['size']:.3f} | "
                    f"{100 * (m['accuracy'] - base['accuracy']):+.2f} | {100 * (m['f1'] - base['f1']):+.2f} | "
                    f"{r1:.2f} | {r64:.2f} |"
                )
    print(f"\n{time.monotonic() - started:.1f} s in all ({'--quick' if args.quick else 'full'}).")


if __name__ == "__main__":
    main()
