"""/healthz: database, broker and worker state as JSON, for load balancers and humans.

Public on purpose (probes carry no session); it reveals states, never names or secrets.
"""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from dashboard.celery import app


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "engine": connection.vendor}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def _broker_and_workers() -> tuple[dict, dict]:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"ok": True, "mode": "in-process"}, {"ok": True, "mode": "in-process", "count": 0}
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
        broker = {"ok": True, "mode": "redis"}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}, {"ok": False, "count": 0}
    try:
        replies = app.control.ping(timeout=1.0) or []
    except Exception:
        replies = []
    return broker, {"ok": bool(replies), "count": len(replies)}


@never_cache
def healthz(request):
    database = _database()
    broker, workers = _broker_and_workers()
    healthy = database["ok"] and broker["ok"] and workers["ok"]
    body = {"status": "ok" if healthy else "degraded", "database": database, "broker": broker, "workers": workers}
    return JsonResponse(body, status=200 if healthy else 503)
