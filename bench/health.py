"""Server time of /healthz (liveness) and /readyz (database, broker, worker heartbeats) per request, through
Django's full middleware stack (the test client), with a heartbeat written as a worker writes it.

Baseline, measured in the same run: the old /healthz, which asked the workers for a broadcast ping and waited
up to a second for their replies (app.control.ping(timeout=1.0)).

Target (issue 10): /healthz under 5 ms.

    .venv/bin/python bench/health.py [--requests N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common  # noqa: F401  (Django set up from the environment)
from django.test import Client

from dashboard.celery import app, heartbeat_clear, heartbeat_write


def timed_ms(client: Client, path: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code in (200, 503), response.status_code
    return sorted(times)


def describe(path: str, times: list[float]) -> str:
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    return f"{path}: median {statistics.median(times):.2f} ms, p99 {p99:.2f} ms, max {times[-1]:.2f} ms ({len(times):,} requests)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    client = Client(HTTP_HOST="127.0.0.1")
    hostname = "bench-health@localhost"
    heartbeat_write(hostname=hostname, queues=["default"])
    try:
        for path in ("/healthz", "/readyz"):
            timed_ms(client, path, 50)  # warm-up: URL resolver, the database connection
            print(describe(path, timed_ms(client, path, args.requests)))
        status = client.get("/readyz").status_code
        print(f"/readyz answered {status} (a 503 means the database or Redis did not answer)")
    finally:
        heartbeat_clear(hostname=hostname)
    old = []
    for _ in range(3):
        start = time.perf_counter()
        app.control.ping(timeout=1.0)
        old.append((time.perf_counter() - start) * 1000)
    print(f"baseline (old /healthz: broadcast ping to the workers): median {statistics.median(old):,.0f} ms per request")


if __name__ == "__main__":
    main()
