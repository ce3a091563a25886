"""Log lines: text for a person at a terminal (LOG_FORMAT=text, the default) or one JSON object a line for a
log pipeline (LOG_FORMAT=json, what compose runs).

Every line carries the context of the work it belongs to, from a context variable that the request middleware
(dashboard/request_telemetry.py) and the Celery signals (dashboard/celery.py) fill: the request id, who made the
request (a username, or a token's public prefix, never the token), the deployment slug when the route names one,
and the Celery task's id and name in workers.

No secret and no feature value goes in a log: requests are logged by route name, never by raw path or query
(an acknowledge link's path is a credential), bodies are never logged, and as a last guard anything shaped like
one of our tokens or a bearer header has its secret part masked on the way out.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("request_id", "user", "deployment", "task_id", "task_name")

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("watchkeeper_log_context", default={})  # noqa: B039  (never mutated: bind() replaces it)

# wk_<prefix>_<secret>, wkp_<prefix>_<secret>, wks_<prefix>_<secret> (monitoring/token_models.py): keep the
# public prefix, mask the secret. And any "Bearer <credential>", whatever it is.
_TOKEN = re.compile(r"\b(wk[ps]?_[A-Za-z0-9]+)_[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")


def redact(text: str) -> str:
    return _BEARER.sub(r"\1 [redacted]", _TOKEN.sub(r"\1_[redacted]", text))


def context() -> dict[str, str]:
    return dict(_context.get())


def bind(**fields: str | None) -> None:
    """Add fields to the current context (a request's, a task's); None removes one."""
    current = dict(_context.get())
    for key, value in fields.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = str(value)
    _context.set(current)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """The context for one unit of work, restored after it (a request, a task run)."""
    token = _context.set({})
    try:
        bind(**fields)
        yield
    finally:
        _context.reset(token)


def restore(saved: dict[str, str]) -> None:
    """Put back a context taken with context()."""
    _context.set(dict(saved))


class ContextFilter(logging.Filter):
    """Puts the context's fields on every record, as attributes (empty when not known), for both formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _context.get()
        for key in CONTEXT_FIELDS:
            if not hasattr(record, key):
                setattr(record, key, current.get(key, ""))
        return True


class RouteNotPathFilter(logging.Filter):
    """django.request and django.security log "Internal Server Error: /ack/<credential>/" and carry the request,
    whose repr holds the path too: put the route's name in place of both."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if request is None:
            return True
        match = getattr(request, "resolver_match", None)
        route = f"route {match.view_name}" if match and match.view_name else "an unrouted path"
        path = getattr(request, "path", None)
        if path and isinstance(record.args, tuple):
            record.args = tuple(route if arg == path else arg for arg in record.args)
        record.request = route
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(context)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = [f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if getattr(record, key, "")]
        record.context = f"[{' '.join(fields)}] " if fields else ""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp (UTC, ISO 8601), level, logger, message, the context's fields that are
    set, the extra fields a call passed (logger.info(..., extra={"status": 201})), and an exception's traceback."""

    # The attributes every LogRecord has: anything else on a record is an `extra` to emit.
    _STANDARD = (frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)
                 | {"message", "asctime", "context", *CONTEXT_FIELDS})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            if value := getattr(record, key, ""):
                line[key] = value
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and key not in line and not key.startswith("_"):
                line[key] = value if isinstance(value, int | float | bool | type(None)) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, ensure_ascii=False, default=str))


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING dict for settings (and gunicorn's own loggers, docker/gunicorn.conf.py)."""
    formatter = {"()": JsonFormatter} if log_format == "json" else {"()": TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}, "route_not_path": {"()": RouteNotPathFilter}},
        "formatters": {"watchkeeper": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "watchkeeper",
                        "filters": ["context", "route_not_path"]},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # httpx logs every request at INFO; the delivery log (DeliveryAttempt) already records each one.
            "django.db.backends": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            # Our access line (dashboard/request_telemetry.py) says what these would of a 4xx, by route name;
            # they print the raw path, and an acknowledge link's path is a credential. 5xx still log (ERROR),
            # by route name (RouteNotPathFilter).
            "django.server": {"level": "WARNING"},
            "django.request": {"level": "ERROR"},
        },
    }
