"""The first middleware: gives each request an id, a log context and its line in the metrics.

- X-Request-ID: taken from the request when well-formed (a proxy's or a client's id, so one id follows a call
  through every hop), else made here; echoed on the response.
- The log context (dashboard/logs.py): the id, the deployment slug when the route names one, and who asked
  (a dashboard user's name, or a token's public prefix, bound by dashboard/api/auth.py when it authenticates).
- The metrics (monitoring/telemetry.py): a count by route name, method and status, and the time taken. Route
  names, never raw paths: a path holds slugs, ids and, for acknowledge links, a credential.
- One access line per request, at INFO on logger "watchkeeper.access", by route name (gunicorn's own access
  log, which prints raw paths, is off: docker/entrypoint.sh).
- Server-Timing on every answer that is not a refusal: `total` (ms from this middleware to the answer, wall
  clock: on a busy process that includes waiting for the GIL) and `cpu` (the request thread's own CPU ms), after
  any timing the view set itself, so a client can tell the server's cost from the network's and its own queueing.
  A refusal (4xx but 304, 5xx) and the routes that check a credential (login, acknowledge links) carry none: a
  precise timing of a credential check would help whoever guesses credentials.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from dashboard import logs
from monitoring import telemetry
from monitoring.models import ApiToken
from monitoring.token_models import MachineToken

access_logger = logging.getLogger("watchkeeper.access")

HEADER = "X-Request-ID"
# What we take from a client: a UUID, a hex trace id, or any short id of these characters. Anything else
# (too long, spaces, control characters a log viewer might interpret) is replaced.
WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{7,127}$")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: "other"
UNMATCHED = "unmatched"  # no route: a 404 from the resolver, counted under one name whatever the path


def request_id_for(request: HttpRequest) -> str:
    sent = request.headers.get(HEADER, "")
    return sent if WELL_FORMED_ID.match(sent) else uuid.uuid4().hex


def principal_of(request: HttpRequest) -> str | None:
    """Who made the request, for logs: a token's public prefix, or a username. Never reads a session that the
    request has not already read (that would cost a query)."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiToken):
        return f"wk_{auth.prefix}"
    machine = getattr(request, "machine_token", None)
    if isinstance(machine, MachineToken):
        return machine.display
    user = request.__dict__.get("_cached_user")  # set once something asked for request.user
    if user is not None and user.is_authenticated:
        return str(user.get_username())
    return None


# Routes whose answer time would tell a credential check's work (the password hash, an acknowledge link's signature).
CREDENTIAL_ROUTES = frozenset({"login", "alert-ack"})


def route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return match.view_name or match.route or UNMATCHED


class RequestTelemetryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        started, started_cpu = time.perf_counter(), time.thread_time()
        with logs.bound(request_id=request_id):
            response = self.get_response(request)
            elapsed, cpu = time.perf_counter() - started, time.thread_time() - started_cpu
            route = route_of(request)
            method = request.method if request.method in METHODS else "other"
            logs.bind(user=principal_of(request))
            telemetry.http_requests.labels(route=route, method=method, status=str(response.status_code)).inc()
            telemetry.http_request_duration.labels(route=route, method=method).observe(elapsed)
            access_logger.info(
                "%s %s %s %.1f ms", method, route, response.status_code, elapsed * 1000,
                extra={"method": method, "route": route, "status": response.status_code,
                       "duration_ms": round(elapsed * 1000, 2)},
            )
        response[HEADER] = request_id
        if response.status_code < 400 and route_of(request) not in CREDENTIAL_ROUTES:
            timing = f"total;dur={elapsed * 1000:.2f}, cpu;dur={cpu * 1000:.2f}"
            earlier = response.get("Server-Timing")
            response["Server-Timing"] = f"{earlier}, {timing}" if earlier else timing
        else:
            del response["Server-Timing"]
        return response

    def process_view(self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: dict[str, Any]) -> None:
        slug = kwargs.get("slug")
        if isinstance(slug, str):
            logs.bind(deployment=slug)
        return None
