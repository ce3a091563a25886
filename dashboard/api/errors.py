"""Every failure leaves the API as an RFC 9457 problem: `application/problem+json` with type, title, status and
detail, and our `errors` list (row, line, field, message) as an extension member, with the status that fits."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError

from dashboard.api.schemas import ErrorItem, ErrorOut
from monitoring.services import ServiceError

PROBLEM_JSON = "application/problem+json"


def error_responses(*codes: int) -> dict[int, type[ErrorOut]]:
    """The documented error statuses of an endpoint, all with the one error shape."""
    return {code: ErrorOut for code in codes}


def problem(status: int, detail: str, errors: list | None = None) -> JsonResponse:
    """An RFC 9457 problem. `type` is about:blank, so `title` is the status phrase (section 4.2.1): what the
    client should do is in `detail`, and which rows or fields are at fault in `errors`."""
    items = [ErrorItem.model_validate(error).model_dump() for error in errors or []]  # the documented shape, always
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail,
            "errors": items}
    return JsonResponse(body, status=status, content_type=PROBLEM_JSON)


def database_unavailable() -> JsonResponse:
    """The database is out of reach (restarting, failing over): a 503 the client retries after Retry-After.
    Whatever the request was writing was in a transaction that never committed, so nothing is half-stored."""
    response = problem(
        503, "The database is briefly unavailable; nothing from this request was stored. "
        f"Retry the same request (with the same Idempotency-Key) in {settings.DATABASE_RETRY_AFTER_SECONDS} s.",
    )
    response["Retry-After"] = str(settings.DATABASE_RETRY_AFTER_SECONDS)
    return response


def _error(api: NinjaAPI, request: HttpRequest, status: int, detail: str, errors: list | None = None) -> HttpResponse:
    return problem(status, detail, errors)


def _validation_errors(exc: ValidationError) -> list[dict]:
    """ninja's pydantic errors as our items. A loc is (source, param, ...): ("query", "limit") becomes "limit";
    a body schema adds its parameter name, so ("body", "payload", "name") becomes "name"."""
    items = []
    for error in exc.errors:
        loc = [str(part) for part in error.get("loc", ())]
        path = loc[2:] if loc[:1] == ["body"] and len(loc) > 2 else loc[1:]
        items.append({"field": ".".join(path), "message": error.get("msg", "is not valid")})
    return items


def install_handlers(api: NinjaAPI) -> None:
    def service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
        return _error(api, request, exc.status, exc.message, exc.errors)

    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return _error(api, request, 404, str(exc) or "Not found.")

    def forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        return _error(api, request, 403, str(exc) or "You may not do that.")

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        response = _error(api, request, exc.status_code, exc.message)
        challenge = getattr(exc, "www_authenticate", "")  # set by the token auth (RFC 6750)
        if challenge:
            response["WWW-Authenticate"] = challenge
        return response

    def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        return _error(api, request, 422, "The request is not valid.", _validation_errors(exc))

    def too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        return _error(api, request, 413, f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")

    def database_down(request: HttpRequest, exc: Exception) -> HttpResponse:
        return database_unavailable()

    api.add_exception_handler(ServiceError, service_error)
    # OperationalError: no connection, or it broke mid-request; InterfaceError: a connection already closed.
    api.add_exception_handler(OperationalError, database_down)
    api.add_exception_handler(InterfaceError, database_down)
    api.add_exception_handler(Http404, not_found)
    api.add_exception_handler(PermissionDenied, forbidden)
    api.add_exception_handler(HttpError, http_error)
    api.add_exception_handler(ValidationError, invalid)
    api.add_exception_handler(RequestDataTooBig, too_big)


def _refusal(status: int, detail: str) -> JsonResponse:
    """The error shape, from a view decorator that runs before ninja (and its exception handlers) is reached."""
    return problem(status, detail)


def file_body(run: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse a file sent as a URL-encoded form (curl's default for --data-binary) before Django parses it as
    one: it would be read as form fields, and over MAX_REQUEST_BYTES refused as "too large"."""

    @wraps(run)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.content_type == "application/x-www-form-urlencoded":
            return _refusal(415, "Send the file as the request body with Content-Type: application/vnd.apache.parquet "
                            "or text/csv (curl: -H 'Content-Type: text/csv' --data-binary @file.csv), or as a "
                            "multipart form field named file (curl: -F file=@file.csv).")
        return run(request, *args, **kwargs)

    return checked
