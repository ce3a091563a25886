"""What the client raises. Transient failures (network, 5xx, 429) are retried inside the client; these reach
the caller only when there is nothing left to retry."""

from __future__ import annotations


class WatchkeeperError(Exception):
    """Base of every error the client raises."""


class Unreachable(WatchkeeperError):
    """The server could not be reached, or answered 5xx/429: worth retrying later."""


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
