"""Milliseconds to check an uploaded model, the 30-feature breast-cancer pipeline of the demo: `inspect_model`,
which walks the graph for external data and smoke-runs it in a limited child of the helper process
(monitoring/smoke.py); and the first call of a process, which also starts the helper.

Baseline, measured in the same run: the previous check, which parsed, ran the ONNX checker, created the
session in our own process and ran two rows of zeros there.

    .venv/bin/python bench/model_check.py [--calls N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import _common  # noqa: F401  (Django set up from the environment)
import numpy as np
import onnx
import onnxruntime as ort
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from monitoring.maintenance.export import estimator_to_onnx
from monitoring.runtime import inspect_model


def in_process_check(data: bytes) -> None:
    """What inspect_model did before: everything in the calling process, no limits."""
    onnx.checker.check_model(onnx.load_model_from_string(data))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: np.zeros((2, 30), dtype=np.float32)})


def timed_ms(check: Callable[[], object], calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        check()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    X, y = load_breast_cancer(return_X_y=True)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    data = estimator_to_onnx(estimator, feature_names=[f"f{i}" for i in range(30)], class_labels=["0", "1"])

    start = time.perf_counter()
    inspect_model(data, expected_features=30)
    first = (time.perf_counter() - start) * 1000
    in_process_check(data)  # warm onnxruntime's environment in this process, as a long-lived web process has it
    for name, check in (("before: in process", lambda: in_process_check(data)),
                        ("now: out of process", lambda: inspect_model(data, expected_features=30))):
        times = timed_ms(check, args.calls)
        print(f"{name:22} median {statistics.median(times):6.1f} ms   p95 {np.percentile(times, 95):6.1f} ms")
    print(f"{'first call (helper)':22} {first:6.0f} ms")


if __name__ == "__main__":
    main()
