"""The serving contract under load, server side (docs/serving.md), against a real gunicorn started as
`docker/entrypoint.sh web` starts it (gthread, WEB_WORKERS × WEB_THREADS), on 127.0.0.1.

1. 200 concurrent pollers on the 304 path (`If-None-Match` equal to the ETag, no wait), each its own instance on
   its own keep-alive connection. Per request, four clocks, p50/p95 each:
   - server time: the Server-Timing `total` every response carries (dashboard/request_telemetry.py), from the
     first middleware to the answer, wall clock; on a busy worker it includes waiting for the GIL among its threads;
   - server CPU: Server-Timing `cpu`, the request thread's own CPU time (what the request costs the server);
   - gunicorn's own request timer (access log %(D)s µs): also the worker's parsing and writing, and its queueing;
   - round trip, measured by the client: also the client's own queueing (its 200 threads share the 2 cores).
   The target (p95 <= 5 ms server time) is judged on the first.
   Baseline in the same run: /healthz (a trivial view) under the same 200 pollers.
2. 50 simulated instances long-polling (`wait=30`) when a candidate is approved: seconds from the approval's commit
   to each instance receiving the new version (max and p95). Baseline in the same run: the same 50 instances
   making one plain poll at once (the floor: what answering 50 requests costs this machine).

Targets (issue 13): 304 path p95 <= 5 ms server time; approval -> all 50 instances told <= 2 s.

Always runs on its own database (BENCH_SERVING_DATABASE_URL, default wk_bench_serving, created and migrated if
missing): approvals write the append-only audit trail, which does not belong in the app's database.
The client-side figures (the client library's overhead) are in bench/serving_client.py.

    .venv/bin/python bench/serving.py [--pollers 200] [--requests 20] [--instances 50] [--port N]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["DATABASE_URL"] = os.environ.get("BENCH_SERVING_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wk_bench_serving")
os.environ.pop("CACHE_URL", None)
_key_dir = tempfile.mkdtemp(prefix="wk-bench-serving-")
os.environ.setdefault("SIGNING_KEY_FILE", str(Path(_key_dir) / "signing-key.pem"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


sys.path.insert(0, str(ROOT))
from docker.services import ensure_database

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
import django

django.setup()
ensure_database(os.environ["DATABASE_URL"])
from django.contrib.auth.models import User
from django.core.management import call_command
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from monitoring import services, signing
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import Deployment

call_command("migrate", verbosity=0)
signing.key_file_create(Path(os.environ["SIGNING_KEY_FILE"]))


def _model(seed: int) -> bytes:
    X, y = make_classification(n_samples=300, n_features=8, random_state=seed)
    estimator = LogisticRegression(max_iter=500).fit(X.astype("float32"), y.astype(str))
    return estimator_to_onnx(estimator, feature_names=[f"f{i}" for i in range(8)], class_labels=["0", "1"])


def _start_web(port: int, access_log: Path) -> subprocess.Popen:
    env = dict(os.environ, BIND=f"127.0.0.1:{port}", DEBUG="false", ALLOWED_HOSTS="127.0.0.1",
               PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    process = subprocess.Popen(
        ["bash", "docker/entrypoint.sh", "web", "--access-logfile", str(access_log),
         "--access-logformat", "%(U)s %(s)s %(D)s"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
            return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("gunicorn did not start within 60 s")


def _server_times_ms(access_log: Path, path: str, status: str, since_line: int) -> tuple[list[float], int]:
    lines = access_log.read_text().splitlines()
    times = [int(parts[2]) / 1000 for parts in (line.split() for line in lines[since_line:])
             if len(parts) == 3 and parts[0] == path and parts[1] == status]
    return sorted(times), len(lines)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


class Clocks:
    """Per-request times in ms, one list per clock."""

    def __init__(self) -> None:
        self.total: list[float] = []  # Server-Timing total: first middleware to the answer
        self.cpu: list[float] = []  # Server-Timing cpu: the request thread's CPU
        self.round_trip: list[float] = []  # the client's clock around request and response


def _server_timing(header: str | None) -> dict[str, float]:
    parts = (part.strip().split(";dur=") for part in (header or "").split(",") if ";dur=" in part)
    return {name: float(value) for name, value in parts}


def _hammer(port: int, path: str, headers: dict, *, pollers: int, requests: int) -> tuple[float, Clocks]:
    """`pollers` threads, each on its own keep-alive connection, `requests` GETs each; (wall seconds, clocks)."""
    start_gate = threading.Barrier(pollers + 1)
    failures: list[str] = []
    clocks = Clocks()

    def poller(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start_gate.wait()
        for _ in range(requests):
            sent = time.perf_counter()
            conn.request("GET", path.format(i=i), headers=headers)
            response = conn.getresponse()
            response.read()
            clocks.round_trip.append((time.perf_counter() - sent) * 1000)
            timing = _server_timing(response.getheader("Server-Timing"))
            clocks.total.append(timing["total"])
            clocks.cpu.append(timing["cpu"])
            if response.status not in (200, 304):
                failures.append(str(response.status))
        conn.close()

    threads = [threading.Thread(target=poller, args=(i,)) for i in range(pollers)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, e.g. {failures[0]}")
    return time.perf_counter() - started, clocks


def _line(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    return (f"{label:<44} p50 {statistics.median(ordered):8.2f}   p95 {_pct(ordered, 0.95):8.2f}   "
            f"p99 {_pct(ordered, 0.99):8.2f}   max {ordered[-1]:8.2f} ms")


def _poll(port: int, path: str, headers: dict) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20, help="per poller")
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--port", type=int, default=0, help="gunicorn's port on 127.0.0.1 (default: any free one)")
    args = parser.parse_args()

    run = time.strftime("%Y%m%d%H%M%S")
    by, _ = User.objects.get_or_create(username="bench-serving")
    team = services.team_get_or_create(name=f"Bench serving {run}")
    deployment = services.deployment_create_from_model(team=team, name=f"bench-serving-{run}", data=_model(0), by=by)
    Deployment.objects.filter(pk=deployment.pk).update(require_distinct_approver=False)
    deployment.refresh_from_db()
    _, token = services.token_create(deployment=deployment, name="bench", by=by)
    auth = {"Authorization": f"Bearer {token}"}
    serving = f"/api/v1/deployments/{deployment.slug}/serving"

    port = args.port or _free_port()
    access_log = Path(_key_dir) / "access.log"
    web = _start_web(port, access_log)
    try:
        status, headers, _ = _poll(port, f"{serving}?instance=probe", auth)
        assert status == 200, status
        etag = headers["ETag"]
        workers, threads = os.environ.get("WEB_WORKERS", "2"), os.environ.get("WEB_THREADS", "100")
        print(f"gunicorn gthread, {workers} workers x {threads} threads, on 127.0.0.1; {os.cpu_count()} cores shared with the load")

        # 1. the 304 path vs a trivial view, same load shape
        _hammer(port, "/healthz", {}, pollers=20, requests=5)  # warm-up: connections, URL resolver
        _hammer(port, f"{serving}?instance=warm", auth | {"If-None-Match": etag}, pollers=20, requests=5)
        mark = len(access_log.read_text().splitlines())
        base_wall, base = _hammer(port, "/healthz", {}, pollers=args.pollers, requests=args.requests)
        time.sleep(0.5)  # the access log is written after the response
        base_gunicorn, mark = _server_times_ms(access_log, "/healthz", "200", mark)
        # Each poller its own instance, as a fleet has. Its first poll (not measured) opens a connection; the
        # steady state measured after it is the 304 path (its "last seen" is written by a background thread).
        _hammer(port, f"{serving}?instance=poller-{{i}}", auth | {"If-None-Match": etag}, pollers=args.pollers, requests=1)
        time.sleep(0.5)
        mark = len(access_log.read_text().splitlines())
        wall, served = _hammer(port, f"{serving}?instance=poller-{{i}}", auth | {"If-None-Match": etag},
                               pollers=args.pollers, requests=args.requests)
        time.sleep(0.5)
        served_gunicorn, _ = _server_times_ms(access_log, serving, "304", mark)
        connections = _database_connections()
        n = args.pollers * args.requests
        print(f"{args.pollers} concurrent pollers x {args.requests} requests; 304 path {n / wall:,.0f} requests/s, "
              f"/healthz {n / base_wall:,.0f}/s")
        for label, ours, theirs in (
            ("server time (Server-Timing total)", served.total, base.total),
            ("server CPU per request (Server-Timing cpu)", served.cpu, base.cpu),
            ("gunicorn's request timer (%(D)s)", served_gunicorn, base_gunicorn),
            ("round trip, client side", served.round_trip, base.round_trip),
        ):
            print(f"  304 path, {_line(label, ours)}")
            print(f"  /healthz, {_line(label, theirs)}   ratio at p95 {_pct(sorted(ours), 0.95) / _pct(sorted(theirs), 0.95):.2f}x")
        print(f"database connections open after the load: {connections} (Postgres max_connections is shared)")
        print(f"target: 304 path p95 <= 5 ms server time: {_pct(sorted(served.total), 0.95):.2f} ms "
              f"({'met' if _pct(sorted(served.total), 0.95) <= 5 else 'not met'})")

        # 2. approval -> every long-polling instance told
        candidate = services.version_register(deployment=deployment, data=_model(1), by=by)
        floor_started = time.perf_counter()
        floor = _concurrently(args.instances, lambda i: _poll(port, f"{serving}?instance=sim-{i}", auth))
        floor_s = time.perf_counter() - floor_started
        told_at: dict[int, float] = {}
        ready = threading.Barrier(args.instances + 1)

        def instance(i: int) -> None:
            ready.wait()
            status, _, body = _poll(port, f"{serving}?instance=sim-{i}&wait=30", auth | {"If-None-Match": etag})
            if status == 200 and b'"version":2' in body.replace(b" ", b""):
                told_at[i] = time.perf_counter()

        threads_ = [threading.Thread(target=instance, args=(i,)) for i in range(args.instances)]
        for thread in threads_:
            thread.start()
        ready.wait()
        time.sleep(1.5)  # every instance is waiting on the server
        approved_at = time.perf_counter()
        services.version_approve(version=candidate, by=by, comment="bench")
        committed_at = time.perf_counter()
        for thread in threads_:
            thread.join(timeout=40)
        delays = sorted(t - committed_at for t in told_at.values())
        print(f"approval -> {len(delays)}/{args.instances} long-polling instances told v2: max {delays[-1]:.3f} s, "
              f"p95 {_pct(delays, 0.95):.3f} s after commit (the approval itself took {committed_at - approved_at:.3f} s); "
              "target <= 2 s")
        print(f"baseline: {len(floor)} instances polling at once, all answered in {floor_s:.3f} s; "
              f"ratio {delays[-1] / floor_s:.2f}x")
        if len(delays) != args.instances:
            raise SystemExit(f"{args.instances - len(delays)} instances were not told the new version")
    finally:
        web.terminate()
        web.wait(timeout=30)


def _database_connections() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def _concurrently(n: int, call) -> list:
    results: list = [None] * n

    def run(i: int) -> None:
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


if __name__ == "__main__":
    main()
