"""How fast is a drift check of a large window? Prints seconds, peak memory and ratios against a per-column
scipy loop and against Evidently 0.7 (DataDriftPreset), all measured in this run on the same data.

    .venv/bin/python bench/drift.py            # 1,000,000 x 20 current vs a 1,000,000-row reference profile
    .venv/bin/python bench/drift.py --quick    # 100,000 rows, under a minute
    .venv/bin/python bench/drift.py --skip-evidently
    .venv/bin/python bench/drift.py --wide     # 100,000 x 1,000 window vs a 500,000-row reference (~10 min)

Evidently runs as a subprocess that reads the same arrays from .npy files: with the interpreter running this
script when it has Evidently (`pip install -e '.[bench]'`), else in its own virtualenv (bench/.venvs/evidently,
created on first use). With --wide it takes ~2 s per feature, so it runs on the first --evidently-features
columns (shifted ones included) and its time is extrapolated linearly to the full width (columns are independent
in its DataDriftPreset; measured linear from 10 to 30 columns: 17.5 s, 73.7 s under load).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitoring import drift, storage

EVIDENTLY_VENV = Path(__file__).resolve().parent / ".venvs" / "evidently"
EVIDENTLY_SCRIPT = """
import json, sys, time
import numpy as np, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
reference, current = np.load(sys.argv[1]), np.load(sys.argv[2])
columns = [f"f{j}" for j in range(reference.shape[1])]
reference = pd.DataFrame(reference.astype(np.float64), columns=columns)
current = pd.DataFrame(current, columns=columns)
start = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
seconds = time.perf_counter() - start
values = {}
for metric in snapshot.dict()["metrics"]:
    if "column" in metric["config"]:
        values[metric["config"]["column"]] = float(metric["value"])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "maxrss_kb": int(hwm.split()[1]), "values": values}))
"""


def make_data(rows: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference as stored (float32), current as production traffic arrives (float64); 5 features shifted."""
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(rows, features)).astype(np.float32)
    current = rng.normal(size=(rows, features))
    current[:, :5] += np.linspace(0.05, 0.5, 5)
    current[:, 5] = np.round(current[:, 5], 1)  # many ties
    current[::50, 6] = np.nan  # some missing values
    return reference, current


def end_to_end(root: Path, profile_sha: str, window_sha: str) -> tuple[drift.DriftResult, str]:
    """Load the stored profile and window (sha256-verified), check, and build the report rows as stored."""
    profile = drift.ReferenceStats.from_bytes(storage.read_blob(root, profile_sha))
    current = np.load(io.BytesIO(storage.read_blob(root, window_sha)), allow_pickle=False)
    result = drift.feature_drift(profile, current)
    return result, json.dumps(result.features_as_dicts(), allow_nan=False)


def scipy_loop(reference: np.ndarray, current: np.ndarray) -> float:
    """The obvious implementation: per column, scipy's KS and Wasserstein on the raw samples."""
    start = time.perf_counter()
    for j in range(reference.shape[1]):
        ref = reference[:, j].astype(np.float64)
        cur = current[:, j][np.isfinite(current[:, j])]
        stats.ks_2samp(ref, cur)
        stats.wasserstein_distance(ref, cur) / max(ref.std(), 0.001)
    return time.perf_counter() - start


def _has_evidently(python: str) -> bool:
    return subprocess.run([python, "-c", "import evidently, pandas"], capture_output=True).returncode == 0


def evidently(reference: np.ndarray, current: np.ndarray, workdir: Path) -> dict:
    python = Path(sys.executable) if _has_evidently(sys.executable) else EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print("creating bench/.venvs/evidently (pip install 'evidently==0.7.*' 'pandas<3') ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "evidently==0.7.*", "pandas<3"], check=True)
    np.save(workdir / "reference.npy", reference)
    np.save(workdir / "current.npy", current)
    out = subprocess.run(
        [str(python), "-c", EVIDENTLY_SCRIPT, str(workdir / "reference.npy"), str(workdir / "current.npy")],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_mb(code: str, *argv: str) -> float:
    """Peak RSS of a fresh interpreter running `code`, read as its VmHWM: the high-water mark of its own memory
    map, which exec starts afresh (getrusage's ru_maxrss keeps the forking parent's peak: this process's 2 GB
    reference)."""
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parent.parent))
    return float(out.stdout.strip().splitlines()[-1])


CHECK_IN_SUBPROCESS = """
import io, sys
import numpy as np
from monitoring import drift, storage
from pathlib import Path
root, profile_sha, window_sha = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
profile = drift.ReferenceStats.from_bytes(storage.read_blob(root, profile_sha))
current = np.load(io.BytesIO(storage.read_blob(root, window_sha)), allow_pickle=False)
drift.feature_drift(profile, current).features_as_dicts()
print(int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]) / 1e3)
"""


def wide(args) -> None:
    """The wide case of issue #15: 1,000 features, a 500,000-row reference, a 100,000-row window."""
    ref_rows, cur_rows, n_features = args.reference_rows, args.window_rows, args.features
    names = [f"f{j}" for j in range(n_features)]
    print(f"wide drift check: {cur_rows:,} x {n_features:,} window (float32, as batches store it) "
          f"vs a {ref_rows:,}-row reference")
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(size=(ref_rows, n_features), dtype=np.float32)
    current = rng.standard_normal(size=(cur_rows, n_features), dtype=np.float32)
    current[:, :5] += np.linspace(0.05, 0.5, 5).astype(np.float32)
    current[:, 5] = np.round(current[:, 5], 1)
    current[::50, 6] = np.nan
    with tempfile.TemporaryDirectory(prefix="wk-bench-drift-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        profile = drift.build_profile(reference, feature_names=names)
        blob = profile.to_bytes()
        profile_sha = storage.put_blob(root, blob)
        kept = profile.features[0].n
        profile_mb = len(blob) / 1e6
        print(f"reference profile, built once per reference: {time.perf_counter() - start:.1f} s; "
              f"{len(blob) / 1e6:.0f} MB stored ({kept:,} sorted values kept per feature of {ref_rows:,}; "
              f"bound: max({drift.profile.PROFILE_MAX_VALUES:,} values, {drift.profile.MIN_VALUES_PER_FEATURE:,} "
              f"x features) float32 + a {drift.profile.SAMPLE_ROWS:,}-row sample)")
        del blob
        buffer = io.BytesIO()
        np.save(buffer, current)
        window_sha = storage.put_blob(root, buffer.getvalue())
        del buffer

        drift.feature_drift(profile, current[:1000])  # warm-up
        timings = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = drift.feature_drift(profile, current)
            timings.append(time.perf_counter() - start)
        compute = min(timings)
        print(f"computation alone: {compute:.1f} s (best of {args.repeat}: {', '.join(f'{t:.1f}' for t in timings)}); "
              f"{cur_rows * n_features / compute / 1e6:.1f} M values/s; "
              f"{result.n_drifted} of {n_features} features drifted")
        start = time.perf_counter()
        result, _ = end_to_end(root, profile_sha, window_sha)
        e2e = time.perf_counter() - start
        print(f"end to end from storage (load profile + window, check, report rows): {e2e:.1f} s")
        del profile
        tracemalloc.start()
        end_to_end(root, profile_sha, window_sha)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        budget = 3 * current.nbytes / 1e6 + profile_mb
        print(f"peak memory of the end-to-end check (tracemalloc): {peak / 1e6:.0f} MB; target <= 3 x window "
              f"({current.nbytes / 1e6:.0f} MB) + profile ({profile_mb:.0f} MB) = {budget:.0f} MB: "
              f"{'met' if peak / 1e6 <= budget else 'MISSED'}")
        rss = peak_rss_mb(CHECK_IN_SUBPROCESS, str(root), profile_sha, window_sha)
        print(f"peak RSS of a fresh process doing the same (incl. the interpreter, numpy, scipy): {rss:.0f} MB")

        k = min(args.evidently_features, n_features)
        ours = {f.feature: f for f in result.features}
        baseline = scipy_loop(reference[:, :k], current[:, :k].astype(np.float64))
        print(f"per-column scipy loop on the full reference, {k} columns: {baseline:.1f} s -> "
              f"{baseline * n_features / k:.0f} s extrapolated to {n_features:,}; ours is "
              f"{baseline * n_features / k / compute:.0f}x faster")
        if not args.skip_evidently:
            outcome = evidently(np.ascontiguousarray(reference[:, :k]),
                                np.ascontiguousarray(current[:, :k]).astype(np.float64), root)
            full = outcome["seconds"] * n_features / k
            gap = max(abs(ours[c].statistics["wasserstein"] - v) for c, v in outcome["values"].items())
            agree = sum((v >= 0.1) == ours[c].drifted for c, v in outcome["values"].items())
            print(f"Evidently 0.7 DataDriftPreset on the first {k} columns (full 500k reference): "
                  f"{outcome['seconds']:.1f} s, peak RSS {outcome['maxrss_kb'] / 1e3:.0f} MB -> "
                  f"{full:.0f} s extrapolated to {n_features:,} columns; ours is {full / compute:.0f}x faster "
                  f"(computation), {full / e2e:.0f}x (end to end); target >= 100x")
            print(f"verdicts agree on {agree} of {len(outcome['values'])} columns; largest difference of our "
                  f"normalised Wasserstein (on the kept sample) from Evidently's (on all rows): {gap:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--features", type=int, default=None, help="20; 1,000 with --wide")
    parser.add_argument("--wide", action="store_true", help="1,000 features, 500k reference rows, 100k window rows")
    parser.add_argument("--reference-rows", type=int, default=500_000, help="with --wide")
    parser.add_argument("--window-rows", type=int, default=100_000, help="with --wide")
    parser.add_argument("--evidently-features", type=int, default=20, help="with --wide: columns Evidently runs on")
    parser.add_argument("--repeat", type=int, default=2, help="with --wide: timed runs of the check")
    args = parser.parse_args()
    if args.wide:
        args.features = args.features or 1000
        wide(args)
        return
    args.features = args.features or 20
    rows = 100_000 if args.quick else 1_000_000
    names = [f"f{j}" for j in range(args.features)]
    print(f"drift check: {rows:,} current rows x {args.features} numeric features vs a {rows:,}-row reference profile")
    print(f"cores: {os.cpu_count()}, threads used: {min(os.cpu_count() or 1, 4)}")
    reference, current = make_data(rows, args.features)

    with tempfile.TemporaryDirectory(prefix="wk-bench-drift-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        profile = drift.build_profile(reference, feature_names=names)
        profile_sha = storage.put_blob(root, profile.to_bytes())
        print(f"reference profile, built once per reference: {time.perf_counter() - start:.2f} s")
        buffer = io.BytesIO()
        np.save(buffer, current)
        window_sha = storage.put_blob(root, buffer.getvalue())
        del buffer

        drift.feature_drift(profile, current[:1000])  # warm-up: imports and first-call overheads
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            result = drift.feature_drift(profile, current)
            timings.append(time.perf_counter() - start)
        compute = min(timings)
        print(f"computation alone: {compute:.2f} s (best of 3: {', '.join(f'{t:.2f}' for t in timings)})  "
              f"target <= 2 s; {rows * args.features / compute / 1e6:.1f} M values/s")
        start = time.perf_counter()
        result, rows_json = end_to_end(root, profile_sha, window_sha)
        e2e = time.perf_counter() - start
        print(f"end to end from storage (load profile + window, check, report rows): {e2e:.2f} s  target <= 5 s")
        print(f"verdict: {result.n_drifted} of {args.features} features drifted; report rows {len(rows_json) / 1e3:.0f} kB")

        del profile
        tracemalloc.start()
        end_to_end(root, profile_sha, window_sha)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        window_mb = current.nbytes / 1e6
        print(f"peak memory of the end-to-end check (tracemalloc): {peak / 1e6:.0f} MB "
              f"= {peak / current.nbytes:.1f}x the window's {window_mb:.0f} MB of float64")

        baseline = scipy_loop(reference, current)
        print(f"per-column scipy loop (ks_2samp + wasserstein_distance): {baseline:.2f} s  -> ours is {baseline / compute:.1f}x faster")

        if not args.skip_evidently:
            outcome = evidently(reference, current, root)
            ours = {f.feature: f.statistics["wasserstein"] for f in result.features}
            gap = max(abs(ours[c] - v) for c, v in outcome["values"].items()) if outcome["values"] else float("nan")
            print(f"Evidently 0.7 DataDriftPreset: {outcome['seconds']:.2f} s, peak RSS {outcome['maxrss_kb'] / 1e3:.0f} MB "
                  f"-> ours is {outcome['seconds'] / compute:.0f}x faster (computation), "
                  f"{outcome['seconds'] / e2e:.0f}x faster (end to end); "
                  f"largest difference from its normalised Wasserstein values: {gap:.2g}")
    print(f"peak RSS of this process (incl. data generation and the scipy loop): "
          f"{__import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")


if __name__ == "__main__":
    main()
