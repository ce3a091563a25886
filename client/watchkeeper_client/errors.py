"""What the client raises. Transient failures (network, 5xx, 429) are retried inside the client; these reach
the caller only when there is nothing left to retry."""

from __future__ import annotations


class WatchkeeperError(Exception):
    """Base of every error the client raises."""


class Unreachable(WatchkeeperError):
    """The server could not be reached, or answered 5xx/429: worth retrying later. `retry_after`: the seconds
    the server asked for (its Retry-After header, as in a 503 while its database restarts), if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Refused(WatchkeeperError):
    """The server answered 4xx: retrying the same request will not help (bad token, unknown slug, bad rows)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class ModelRejected(WatchkeeperError):
    """A downloaded model failed its checks (size, sha256, signature, signing key) and was not loaded."""


class NoModel(WatchkeeperError):
    """No model to serve: the server was unreachable at start and no fallback file was given."""
