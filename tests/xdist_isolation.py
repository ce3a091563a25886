"""Loaded with `-p tests.xdist_isolation` (pyproject's addopts), before pytest-django reads the settings.

Under pytest-xdist each test process gets a database of its own (pytest-django suffixes the name with the worker
id), but the broker would be shared: a Celery worker spawned by one test process would take the tasks another one
queued. So each process moves to its own Redis database, the base number plus one plus its index."""

from __future__ import annotations

import os
import re

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_index = re.fullmatch(r"gw(\d+)", _worker)
if _index:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    match = re.fullmatch(r"(redis://[^/]+)(?:/(\d+))?", url)
    if not match:
        raise RuntimeError(f"REDIS_URL {url!r} is not redis://host:port/db; xdist isolation needs the db number")
    db = int(match.group(2) or 0) + 1 + int(_index.group(1))
    if db > 15:
        raise RuntimeError(f"Redis database {db} is beyond the default 16; lower -n or the base database")
    os.environ["REDIS_URL"] = f"{match.group(1)}/{db}"
    os.environ.pop("CACHE_URL", None)
