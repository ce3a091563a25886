"""The one Celery app. Workers: `celery -A dashboard worker`; beat: `celery -A dashboard beat`.

Every worker also writes a heartbeat to Redis (the Heartbeat bootstep below), which /readyz reads: knowing
that a worker is alive then costs the web two Redis reads, not a broadcast ping that waits a second for replies.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from functools import lru_cache
from typing import Any

import redis
from celery import Celery, bootsteps, signals
from celery.worker import WorkController
from redis.exceptions import RedisError

from dashboard import logs
from monitoring import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

logger = logging.getLogger(__name__)

app = Celery("watchkeeper")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])

# A beat every 10 s; a key lives three beats, so one slow or lost write never makes a live worker look dead,
# and a dead one disappears within 30 s.
HEARTBEAT_SECONDS = 10
HEARTBEAT_TTL_SECONDS = 3 * HEARTBEAT_SECONDS
# A probe must answer quickly even when Redis does not: half a second, and no retries.
PROBE_TIMEOUT_SECONDS = 0.5


@lru_cache(maxsize=4)
def redis_client(url: str, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> redis.Redis:
    """A client with short timeouts and no retries, per URL (a test may point the settings elsewhere)."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=None, decode_responses=True
    )


def _keys() -> tuple[str, str]:
    from django.conf import settings

    # (the set of hostnames that have beaten, the prefix of each one's heartbeat key)
    prefix = settings.WORKER_HEARTBEAT_KEY_PREFIX
    return f"{prefix}s", f"{prefix}:"


def heartbeat_write(*, hostname: str, queues: list[str]) -> None:
    """This worker is alive and consumes these queues, for the next HEARTBEAT_TTL_SECONDS."""
    from django.conf import settings

    members, prefix = _keys()
    value = json.dumps({"hostname": hostname, "queues": sorted(queues), "pid": os.getpid(), "at": time.time()})
    pipe = redis_client(settings.REDIS_URL).pipeline(transaction=False)
    pipe.set(prefix + hostname, value, ex=HEARTBEAT_TTL_SECONDS)
    pipe.sadd(members, hostname)
    pipe.execute()


def heartbeat_clear(*, hostname: str) -> None:
    from django.conf import settings

    members, prefix = _keys()
    pipe = redis_client(settings.REDIS_URL).pipeline(transaction=False)
    pipe.delete(prefix + hostname)
    pipe.srem(members, hostname)
    pipe.execute()


def worker_heartbeats() -> list[dict]:
    """The live workers' heartbeats: two Redis round trips (the hostnames, then their keys), whatever the keyspace.

    A hostname whose key has expired is dropped from the set here; its worker stopped without saying so.
    """
    from django.conf import settings

    members, prefix = _keys()
    client = redis_client(settings.REDIS_URL)
    hostnames = sorted(str(h) for h in client.smembers(members))  # already str: the client decodes
    if not hostnames:
        return []
    values = client.mget([prefix + h for h in hostnames])
    gone = [h for h, v in zip(hostnames, values) if v is None]
    if gone:
        client.srem(members, *gone)
    return [json.loads(v) for v in values if v is not None]


class Heartbeat(bootsteps.StartStopStep):
    """Writes this worker's heartbeat from a thread of the main process.

    A thread, not the worker's timer: with the solo pool, or while the event loop is busy, timer entries wait
    for the running task, and a ten-minute job would make a live worker look dead.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: WorkController, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: WorkController) -> None:
        queues = sorted(worker.app.amqp.queues.consume_from) or [worker.app.conf.task_default_queue]
        self._thread = threading.Thread(
            target=self._run, args=(worker.hostname, queues), name="watchkeeper-heartbeat", daemon=True
        )
        self._thread.start()

    def _run(self, hostname: str, queues: list[str]) -> None:
        while True:
            try:
                heartbeat_write(hostname=hostname, queues=queues)
            except RedisError as exc:  # Redis is briefly away: the next beat tries again
                logger.warning("worker heartbeat not written: %s", exc)
            if self._stop.wait(HEARTBEAT_SECONDS):
                return

    def stop(self, worker: WorkController) -> None:
        self._stop.set()
        try:
            heartbeat_clear(hostname=worker.hostname)
        except RedisError:
            pass  # the key expires by itself within HEARTBEAT_TTL_SECONDS


app.steps["worker"].add(Heartbeat)


# Task metrics and log context, from Celery's signals (its documented hooks; the "no signals" rule is about
# Django's). task_prerun and task_postrun run in the process that runs the task, before and after it.
# (start time, the log context before the task): a task run in-process (TASKS_IN_PROCESS) keeps its request's
# id in its lines, and the request gets its context back after.
_started: dict[str, tuple[float, dict[str, str]]] = {}


@signals.task_prerun.connect
def _task_started(task_id: str, task: Any, **kwargs: Any) -> None:
    _started[task_id] = (time.perf_counter(), logs.context())
    logs.bind(task_id=task_id, task_name=task.name)


@signals.task_postrun.connect
def _task_finished(task_id: str, task: Any, state: str | None = None, **kwargs: Any) -> None:
    started, previous = _started.pop(task_id, (None, {}))
    if started is not None:
        telemetry.task_duration.labels(task=task.name).observe(time.perf_counter() - started)
    outcome = {"SUCCESS": "succeeded", "RETRY": "retried"}.get(state or "", "failed")
    telemetry.task_runs.labels(task=task.name, outcome=outcome).inc()
    logs.restore(previous)


@signals.task_failure.connect
def _task_failed(sender: Any = None, **kwargs: Any) -> None:
    if sender is not None:
        telemetry.task_failures.labels(task=sender.name).inc()


@signals.worker_process_init.connect
def _worker_process_started(**kwargs: Any) -> None:
    from django.conf import settings

    if settings.OTEL_ENABLED:
        from dashboard.integrations import otel_instrument_celery

        otel_instrument_celery()


@signals.worker_process_shutdown.connect
def _worker_process_stopped(pid: int | None = None, **kwargs: Any) -> None:
    """A pool process leaves: its live gauges go with it (prometheus_client's multiprocess mode; gunicorn's
    child_exit does the same for web workers, docker/gunicorn.conf.py)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
