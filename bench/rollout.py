"""Progressive rollout figures (docs/rollout.md).

1. Guard evaluation cost per check on 1M rows of stage traffic (100k candidate + 900k active, two classes, with
   probabilities and 10 % labelled, made by calls of 8 rows whose latencies and errors the client reported): the six
   guards on the arrays a check reads, median of 5 runs. Baseline in the same run: one np.sort of the 1M
   max-probabilities (the floor of any KS test on them). Target <= 1 s.
1b. The read of those calls per check (selectors.stage_calls, candidate and active) from Postgres, when the 1M rows
   came in --call-batches batches (default 10,000: 100-row batches, one CallStats row each), median of 5 runs.
   Baseline in the same run: counting the same rows through the same index. It adds to figure 1.
2. Breach -> every simulated long-polling instance on the active version again, against a real gunicorn (as
   docker/entrypoint.sh web starts it). 50 instances long-poll (wait=30) while half of them serve a single-class
   candidate; its traffic breaches the class-shift guard; the guard check runs (what the beat starts at most one
   ROLLOUT_GUARD_INTERVAL_SECONDS after the traffic arrived); we time check + abort commit + every candidate
   instance told the active version. Baseline: the same 50 instances making one plain poll at once.
   Target: <= one guard interval + 2 s, i.e. check-to-last-instance <= 2 s.

Runs on its own database (BENCH_ROLLOUT_DATABASE_URL, default wk_bench_rollout, created and migrated if missing).

    .venv/bin/python bench/rollout.py [--rows 1000000] [--instances 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["DATABASE_URL"] = os.environ.get("BENCH_ROLLOUT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wk_bench_rollout")
# bench/serving.py (whose gunicorn helpers this reuses) creates, migrates and keys the database named here on import.
os.environ["BENCH_SERVING_DATABASE_URL"] = os.environ["DATABASE_URL"]
os.environ.pop("CACHE_URL", None)
_key_dir = tempfile.mkdtemp(prefix="wk-bench-rollout-")
os.environ.setdefault("SIGNING_KEY_FILE", str(Path(_key_dir) / "signing-key.pem"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

import django

django.setup()

import numpy as np

from bench.serving import _concurrently, _free_port, _model, _poll, _start_web
from monitoring.callstats import histogram_of
from monitoring.rollout.guards import CallTraffic, StageTraffic, evaluate_guards

ROWS_PER_CALL = 8


def _stage_arrays(n: int, candidate_share: float, rng: np.random.Generator) -> tuple[StageTraffic, StageTraffic]:
    def side(rows: int) -> StageTraffic:
        predicted = (rng.random(rows) < 0.4).astype(np.int16)
        top = np.clip(rng.normal(0.85, 0.07, rows), 0.5, 1.0).astype(np.float32)
        proba = np.column_stack([np.where(predicted == 0, top, 1 - top), np.where(predicted == 1, top, 1 - top)])
        labelled = rng.random(rows) < 0.1
        truth = np.where(rng.random(labelled.sum()) < 0.9, predicted[labelled], 1 - predicted[labelled])
        calls = rows // ROWS_PER_CALL
        errors = int(calls * 0.002)
        latency_us = 2500 * np.exp(rng.normal(0, 0.3, calls - errors))
        return StageTraffic(predicted, proba, predicted[labelled], truth.astype(np.int16),
                            CallTraffic(histogram_of(latency_us), calls, errors))

    n_candidate = int(n * candidate_share)
    return side(n_candidate), side(n - n_candidate)


def guard_cost(rows: int) -> None:
    rng = np.random.default_rng(14)
    candidate, active = _stage_arrays(rows, 0.1, rng)
    evaluate_guards(candidate, active, n_classes=2)  # warm-up: scipy's imports
    runs, floors = [], []
    for _ in range(5):
        started = time.perf_counter()
        results = evaluate_guards(candidate, active, n_classes=2)
        runs.append(time.perf_counter() - started)
        scores = np.concatenate([candidate.probabilities.max(axis=1), active.probabilities.max(axis=1)])
        started = time.perf_counter()
        np.sort(scores)
        floors.append(time.perf_counter() - started)
    check, floor = statistics.median(runs), statistics.median(floors)
    print(f"guard check on {rows:,} rows ({len(candidate.predicted):,} candidate + {len(active.predicted):,} active): "
          f"median {check:.3f} s over 5 runs (verdicts: {', '.join(f'{r.guard}={r.verdict}' for r in results)}); "
          "target <= 1 s")
    print(f"baseline: np.sort of the {rows:,} max-probabilities, median {floor:.3f} s; ratio {check / floor:.1f}x")


def calls_read(batches: int) -> None:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from monitoring import selectors, services
    from monitoring.models import CallStats

    run = time.strftime("%Y%m%d%H%M%S")
    by, _ = User.objects.get_or_create(username="bench-rollout")
    team = services.team_get_or_create(name=f"Bench rollout calls {run}")
    deployment = services.deployment_create_from_model(team=team, name=f"bench-calls-{run}", data=_model(0), by=by)
    active = deployment.active_version()
    candidate = services.version_register(deployment=deployment, data=_model(1), by=by)
    rng = np.random.default_rng(14)
    start = timezone.now()
    rows_per_batch = 1_000_000 // batches
    calls = rows_per_batch // ROWS_PER_CALL or 1
    CallStats.objects.bulk_create([
        CallStats(deployment=deployment, version=candidate if i % 10 == 0 else active, batch_id=None,
                  idempotency_key=f"bench-{run}-{i}", instance=f"sim-{i % 100}", at=start, calls=calls, errors=0,
                  latency_histogram=np.ascontiguousarray(histogram_of(2500 * np.exp(rng.normal(0, 0.3, calls))),
                                                         dtype="<u4").tobytes())
        for i in range(batches)
    ], batch_size=2000)
    end = timezone.now()
    runs, floors = [], []
    for _ in range(5):
        started = time.perf_counter()
        both = [selectors.stage_calls(deployment=deployment, version=v, start=start, end=end) for v in (candidate, active)]
        runs.append(time.perf_counter() - started)
        started = time.perf_counter()
        for v in (candidate, active):
            CallStats.objects.filter(deployment=deployment, version=v, at__gte=start, at__lt=end).count()
        floors.append(time.perf_counter() - started)
    read, floor = statistics.median(runs), statistics.median(floors)
    assert all(b is not None for b in both) and sum(b.calls for b in both if b) == batches * calls
    print(f"calls read per check: {batches:,} CallStats rows ({rows_per_batch}-row batches of 1M rows), both versions: "
          f"median {read:.3f} s over 5 runs")
    print(f"baseline: counting the same rows, median {floor:.3f} s; ratio {read / floor:.1f}x")


def breach_to_fleet(instances: int) -> None:
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.utils import timezone

    from monitoring import services
    from monitoring.models import Deployment, Rollout
    from workers.rollout import check_rollouts

    run = time.strftime("%Y%m%d%H%M%S")
    by, _ = User.objects.get_or_create(username="bench-rollout")
    team = services.team_get_or_create(name=f"Bench rollout {run}")
    deployment = services.deployment_create_from_model(team=team, name=f"bench-rollout-{run}", data=_model(0), by=by)
    Deployment.objects.filter(pk=deployment.pk).update(require_distinct_approver=False)
    deployment.refresh_from_db()
    _, token = services.token_create(deployment=deployment, name="bench", by=by)
    auth = {"Authorization": f"Bearer {token}"}
    serving = f"/api/v1/deployments/{deployment.slug}/serving"
    candidate = services.version_register(deployment=deployment, data=_model(1), by=by)
    rollout = services.rollout_start(version=candidate, by=by, comment="bench", stages=[{"share": 0.5}, {"share": 1.0}])

    port = _free_port()
    web = _start_web(port, Path(_key_dir) / "access.log")
    try:
        first = _concurrently(instances, lambda i: _poll(port, f"{serving}?instance=sim-{i}", auth))
        etags = [headers["ETag"] for _, headers, _ in first]
        on_candidate = [i for i, (_, _, body) in enumerate(first) if b'"version":2' in body.replace(b" ", b"")]
        floor_started = time.perf_counter()
        _concurrently(instances, lambda i: _poll(port, f"{serving}?instance=sim-{i}", auth))
        floor_s = time.perf_counter() - floor_started
        told_at: dict[int, float] = {}
        ready = threading.Barrier(len(on_candidate) + 1)

        def instance(i: int) -> None:
            ready.wait()
            status, _, body = _poll(port, f"{serving}?instance=sim-{i}&wait=30", auth | {"If-None-Match": etags[i]})
            if status == 200 and b'"version":1' in body.replace(b" ", b""):
                told_at[i] = time.perf_counter()

        threads = [threading.Thread(target=instance, args=(i,)) for i in on_candidate]
        for thread in threads:
            thread.start()
        ready.wait()
        # The breach in the traffic: the candidate answers "1" to everything, the active version mixes.
        rng = np.random.default_rng(1)
        now = timezone.now().isoformat()

        def rows(prefix: str, labels) -> list[dict]:
            return [{"id": f"{prefix}-{k}", "timestamp": now, "features": [float(x) for x in rng.normal(size=8)],
                     "predicted_label": str(label)} for k, label in enumerate(labels)]

        services.predictions_ingest(deployment=deployment, rows=rows("c", ["1"] * 500), version=2)
        services.predictions_ingest(deployment=deployment, rows=rows("a", rng.integers(0, 2, 500)), version=1)
        time.sleep(1.5)  # every instance is waiting on the server
        check_started = time.perf_counter()
        outcomes = check_rollouts(now=timezone.now())
        committed = time.perf_counter()
        for thread in threads:
            thread.join(timeout=40)
        delays = sorted(t - check_started for t in told_at.values())
        assert outcomes.get(rollout.pk) == "aborted", outcomes
        assert Rollout.objects.get(pk=rollout.pk).state == "aborted"
        interval = settings.ROLLOUT_GUARD_INTERVAL_SECONDS
        print(f"breach -> {len(delays)}/{len(on_candidate)} candidate instances (of {instances}) told v1: guard check "
              f"and abort {committed - check_started:.3f} s, last instance {delays[-1]:.3f} s after the check started "
              f"(p95 {delays[int(0.95 * (len(delays) - 1))]:.3f} s); worst case {interval} s (one guard interval) "
              f"+ {delays[-1]:.3f} s; target <= {interval} s + 2 s")
        print(f"baseline: {instances} instances polling at once, all answered in {floor_s:.3f} s; "
              f"ratio {delays[-1] / floor_s:.2f}x")
        if len(delays) != len(on_candidate):
            raise SystemExit(f"{len(on_candidate) - len(delays)} instances were not told the active version")
    finally:
        web.terminate()
        web.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--call-batches", type=int, default=10_000)
    parser.add_argument("--guards-only", action="store_true", help="only figures 1 and 1b (no gunicorn)")
    args = parser.parse_args()
    guard_cost(args.rows)
    calls_read(args.call_batches)
    if not args.guards_only:
        breach_to_fleet(args.instances)


if __name__ == "__main__":
    main()
