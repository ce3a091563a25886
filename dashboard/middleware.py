import io
import sys
import zoneinfo
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.urls import Resolver404, resolve
from django.utils import timezone


class UserTimezoneMiddleware:
    """Show times in the viewer's zone: a browser-set `tz` cookie, or the profile's choice."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.COOKIES.get("tz", "")
        try:
            timezone.activate(zoneinfo.ZoneInfo(name)) if name else timezone.deactivate()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    """Send settings.CONTENT_SECURITY_POLICY on every response that has none of its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY:
            response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


# RFC 9745: when /api/... (without the version) was deprecated, as an HTTP date in seconds since the epoch.
API_UNVERSIONED_DEPRECATED_AT = 1796256000  # 2026-12-03, the release that mounted /api/v1/


class ApiDeprecationMiddleware:
    """Old unversioned /api/... paths still work, and each answer says so: `Deprecation` (RFC 9745) and a `Link`
    to the same resource under /api/v1/ (rel="successor-version", RFC 5829)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.namespace == "api-deprecated":
            successor = "/api/v1/" + request.path_info.removeprefix("/api/")
            response["Deprecation"] = f"@{API_UNVERSIONED_DEPRECATED_AT}"
            response["Link"] = f'<{request.build_absolute_uri(successor)}>; rel="successor-version"'
        return response


# The routes whose bodies are files, and the setting that caps each; every other body (the login page, the
# forms, the JSON API) is capped at DATA_UPLOAD_MAX_MEMORY_SIZE (MAX_REQUEST_BYTES). Keyed by URL pattern
# (ResolverMatch.route): a GET that shares an upload's path has no body to cap. tests/security/test_uploads.py
# checks that each upload's URL name still resolves to its key here.
UPLOAD_ROUTES: dict[str, str] = {
    "api/deployments/<slug>/predictions/upload": "MAX_UPLOAD_BYTES",
    "api/deployments/<slug>/labels/upload": "MAX_UPLOAD_BYTES",
    "api/deployments/<slug>/datasets": "MAX_UPLOAD_BYTES",
    "api/deployments/<slug>/versions": "MAX_MODEL_UPLOAD_BYTES",
    "d/<slug:slug>/datasets/new": "MAX_UPLOAD_BYTES",
    "d/<slug:slug>/versions/new": "MAX_MODEL_UPLOAD_BYTES",
    "deployments/new": "MAX_MODEL_UPLOAD_BYTES",
}
# The API is mounted at /api/v1/ and, deprecated, at /api/: the same caps at both.
UPLOAD_ROUTES |= {f"api/v1/{route[4:]}": cap for route, cap in UPLOAD_ROUTES.items() if route.startswith("api/")}


class BodyTooLarge(RequestDataTooBig):
    """A body of unknown length went past its route's cap while being read."""


class CappedStream(io.RawIOBase):
    """The server's input stream for a body of unknown length: reading more than `limit` bytes raises."""

    def __init__(self, stream: Any, limit: int):
        self._stream = stream
        self.limit = limit
        self.consumed = 0
        self.exceeded = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        room = self.limit + 1 - self.consumed  # one byte past the cap tells "at the cap" from "over it"
        return self._take(self._stream.read(room if size is None or size < 0 else min(size, room)))

    def readline(self, size: int | None = -1, /) -> bytes:
        room = self.limit + 1 - self.consumed
        return self._take(self._stream.readline(room if size is None or size < 0 else min(size, room)))

    def _take(self, data: bytes) -> bytes:
        self.consumed += len(data)
        if self.consumed > self.limit:
            self.exceeded = True
            raise BodyTooLarge(f"The request body is larger than {self.limit} bytes.")
        return data


class RequestBodyLimitMiddleware:
    """Refuse a request body over its route's cap (UPLOAD_ROUTES) with a 413, before anything parses it.

    After sessions and authentication (which read no body) and before CSRF's check and the views, because
    the parsing starts early: on any POST that carries a csrftoken cookie, made-up or not,
    CsrfViewMiddleware reads request.POST before the view runs, and Django streams a multipart body's files
    to disk as it parses. A declared Content-Length over the cap is answered unread. A body of unknown
    length (chunked) is read, on a server that ends the stream there (wsgi.input_terminated, as gunicorn
    does), through CappedStream; whoever meets its error, the answer is this 413. Elsewhere Django reads
    none of such a body. The large upload caps apply only to a logged-in user or a valid API token.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _bodiless(request):  # most requests (every poll): no body to cap, so no second URL resolve for its cap
            return self.get_response(request)
        setting = _cap_setting(request.path_info)
        if setting != SMALL_CAP and not _identified(request):
            # An upload's large cap is for someone we know: anonymous bodies would be parsed (to disk, for
            # multipart) by the CSRF check before any view could refuse them.
            setting = SMALL_CAP
        limit = getattr(settings, setting)
        length = _declared_length(request)
        if length is not None and length > limit:
            return _too_large(request, limit, length)
        stream = None
        if length is None and request.META.get("wsgi.input_terminated"):
            stream = CappedStream(request.META["wsgi.input"], limit)
            request._stream = stream  # what WSGIRequest.read() and the multipart parser read from
        response = self.get_response(request)
        if stream is not None and stream.exceeded:
            return _too_large(request, limit, None)
        return response


SMALL_CAP = "DATA_UPLOAD_MAX_MEMORY_SIZE"


def _cap_setting(path: str) -> str:
    try:
        route = resolve(path).route
    except Resolver404:
        return SMALL_CAP
    return UPLOAD_ROUTES.get(route, SMALL_CAP)


def _identified(request: HttpRequest) -> bool:
    """A logged-in user (the session) or a live API token: whoever may send a large upload at all."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active:
        return True
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return False
    from monitoring import services  # imported late: the middleware module loads before the apps are ready

    raw = raw.strip()
    return services.token_authenticate(raw=raw) is not None or services.machine_token_authenticate(raw=raw, touch=False) is not None


def _bodiless(request: HttpRequest) -> bool:
    """No body at all: no Content-Length (or 0) and no Transfer-Encoding (HTTP/1.1: then there is none)."""
    return request.META.get("CONTENT_LENGTH") in (None, "", "0") and "HTTP_TRANSFER_ENCODING" not in request.META


def _declared_length(request: HttpRequest) -> int | None:
    """The Content-Length, or None when there is none (a chunked body) or it is not a count."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


def _too_large(request: HttpRequest, limit: int, length: int | None) -> HttpResponse:
    if length is None:
        detail = f"The request body is larger than the limit of {_size(limit)}."
    else:
        detail = f"The request body is {length} bytes; the limit is {_size(limit)}."
    if request.path_info.startswith("/api/"):
        from dashboard.api.errors import problem  # imported late, as above: it loads the services

        return problem(413, detail)  # the API's error shape
    return render(request, "413.html", {"detail": detail, "limit": _human(limit)}, status=413)


def _size(n_bytes: int) -> str:
    return f"{n_bytes} bytes" if n_bytes < 1024 else f"{n_bytes} bytes ({_human(n_bytes)})"


def _human(n_bytes: int) -> str:
    return filesizeformat(n_bytes).replace("\xa0", " ")  # "32.0 MB", with a plain space for JSON and logs


DATABASE_ERRORS = (OperationalError, InterfaceError)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: the database is restarting or failing over. A page is plain HTML that needs no
    database (base.html reads the user); the API answers its problem shape."""
    if request.path_info.startswith("/api/"):
        from dashboard.api.errors import database_unavailable as api_answer  # late: it loads the services

        return api_answer()
    seconds = settings.DATABASE_RETRY_AFTER_SECONDS
    response = HttpResponse(
        "<!doctype html><title>Briefly unavailable</title><h1>Watchkeeper is briefly unavailable</h1>"
        f"<p>The database cannot be reached just now; nothing was changed. Reload in {seconds} seconds.</p>",
        status=503, content_type="text/html; charset=utf-8",
    )
    response["Retry-After"] = str(seconds)
    return response


class DatabaseUnavailableMiddleware:
    """A database out of reach is a 503 with Retry-After, not a 500: clients (the serving client, a browser
    reload) retry it, and the operator's error tracking is not flooded during a planned restart.

    process_exception sees what a view raised; what a middleware raised (loading the session or the user)
    reaches server_error below, Django's handler500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_ERRORS):
            return database_unavailable(request)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500 (DEBUG off): a database error raised outside a view is a 503 too; anything else stays a
    plain 500 that reads nothing (the database may be why we are here)."""
    if isinstance(sys.exc_info()[1], DATABASE_ERRORS):
        return database_unavailable(request)
    return HttpResponseServerError("<!doctype html><title>Server error</title><h1>Server error (500)</h1>",
                                   content_type="text/html; charset=utf-8")
