"""The one door from the domain to background work: a service names a Celery task, and never imports it.

`monitoring` sits below `workers` (the import-linter contract in pyproject.toml), so a service cannot import a
task to call `.delay` on it. It names the task by its registered name instead (`workers.tasks.<name>`, the names
the routes, the beat schedule and queued messages already use), and the task is looked up in the Celery app's
registry. That honours CELERY_TASK_ALWAYS_EAGER (the embedded demo and the tests run tasks in-process), which
`send_task` would not. The tasks module is registered in every process that enqueues: dashboard/apps.py imports
it when Django starts (web, management commands, tests), and dashboard/celery.py autodiscovers it in workers.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from celery import Task, current_app
from django.conf import settings
from django.db import transaction


class UnknownTask(LookupError):
    """No task of that name is registered: a typo, or the tasks module was not imported in this process."""


def task_named(name: str) -> Task:
    try:
        return current_app.tasks[name]
    except KeyError:
        raise UnknownTask(f"No Celery task named {name!r} is registered in this process.") from None


def enqueue(task_name: str, *args: int, robust: bool = False, countdown: float | None = None) -> None:
    """Queue the named task with `args` (ids only) once the current transaction commits; at once outside one.

    The name is looked up now, so a wrong one fails in the caller rather than after the commit.
    robust: a broker that cannot be reached is logged instead of raised (the caller's rows are already stored).
    countdown: run it no sooner than this many seconds after the commit.
    """
    task = task_named(task_name)
    if countdown is None:
        transaction.on_commit(lambda: task.delay(*args), robust=robust)
    else:
        transaction.on_commit(lambda: task.apply_async(args, countdown=countdown), robust=robust)


def enqueue_unless_pending(task_name: str, *args: int, flag: str, expires_s: int, robust: bool = False) -> None:
    """Like `enqueue`, unless the Redis key `flag` says one is queued and has not started yet.

    The task deletes `flag` (flag_clear) when it starts, so work arriving after that queues the next one; the
    flag expires after `expires_s` in case a queued task is lost. In-process tasks (eager mode) always run.
    """
    task = task_named(task_name)

    def send() -> None:
        if settings.CELERY_TASK_ALWAYS_EAGER or _redis().set(flag, 1, nx=True, ex=expires_s):
            task.delay(*args)

    transaction.on_commit(send, robust=robust)


def flag_clear(flag: str) -> None:
    _redis().delete(flag)


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    # Short timeouts and no retries: this runs in web requests, which must answer while Redis is away.
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
                                socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS, retry=None)
