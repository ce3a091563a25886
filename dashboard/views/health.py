"""Probes, public on purpose (a load balancer carries no session); they reveal states, never names or secrets.

- /healthz, liveness: the process answers. No database, no Redis: restarting a web process does not fix
  either, so an orchestrator must not restart it for them.
- /readyz, readiness: the database answers SELECT 1, the broker answers PING, and at least one worker has
  written its heartbeat in the last 30 s (dashboard/celery.py). Two Redis reads, never a broadcast ping.
"""

from __future__ import annotations

from django.conf import settings
from django.db import Error, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from redis.exceptions import RedisError

from dashboard.celery import redis_client, worker_heartbeats


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "engine": connection.vendor}
    except Error as exc:  # the answer is that it failed: a probe reports, it does not raise
        return {"ok": False, "error": type(exc).__name__}


def _broker_and_workers() -> tuple[dict, dict]:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # Tasks run inside the web process: it is its own worker, and there is no broker to reach.
        return {"ok": True, "mode": "in-process"}, {"ok": True, "mode": "in-process", "count": 0, "queues": []}
    try:
        redis_client(settings.CELERY_BROKER_URL).ping()
    except RedisError as exc:
        return {"ok": False, "mode": "redis", "error": type(exc).__name__}, {"ok": False, "count": 0, "queues": []}
    try:
        beats = worker_heartbeats()
    except RedisError as exc:
        return {"ok": True, "mode": "redis"}, {"ok": False, "count": 0, "queues": [], "error": type(exc).__name__}
    queues = sorted({queue for beat in beats for queue in beat.get("queues", [])})
    return {"ok": True, "mode": "redis"}, {"ok": bool(beats), "count": len(beats), "queues": queues}


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    database = _database()
    broker, workers = _broker_and_workers()
    ready = database["ok"] and broker["ok"] and workers["ok"]
    body = {"status": "ok" if ready else "unavailable", "database": database, "broker": broker, "workers": workers}
    return JsonResponse(body, status=200 if ready else 503)
