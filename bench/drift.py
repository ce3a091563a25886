"""How fast is a drift check of a large window? Prints seconds, peak memory and ratios against a per-column
scipy loop and against Evidently 0.7 (DataDriftPreset), all measured in this run on the same data.

    .venv/bin/python bench/drift.py            # 1,000,000 x 20 current vs a 1,000,000-row reference profile
    .venv/bin/python bench/drift.py --quick    # 100,000 rows, under a minute
    .venv/bin/python bench/drift.py --skip-evidently

Evidently needs pandas < 3, so it runs in its own virtualenv (bench/.venvs/evidently, created on first use)
as a subprocess that reads the same arrays from .npy files.
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
import json, resource, sys, time
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
print(json.dumps({"seconds": seconds, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "values": values}))
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


def evidently(reference: np.ndarray, current: np.ndarray, workdir: Path) -> dict:
    python = EVIDENTLY_VENV / "bin" / "python"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--features", type=int, default=20)
    args = parser.parse_args()
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
