"""The errors a service raises: `message` is shown to the user, `status` maps to HTTP."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A request that cannot be carried out. `message` is shown to the user; `status` maps to HTTP."""

    status = 400

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class ValidationFailed(ServiceError):
    status = 422


class Conflict(ServiceError):
    status = 409


class NotFound(ServiceError):
    status = 404


class TooLarge(ServiceError):
    status = 413


class NotPermitted(ServiceError):
    """The role allows it, but a rule of the deployment forbids this person doing it."""

    status = 403


class InsufficientStorage(ServiceError):
    """The media store's disk is full (ENOSPC, or a quota): nothing was stored; retry once room is made."""

    status = 507
