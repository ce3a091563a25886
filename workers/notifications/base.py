"""What every transport shares: the error it raises, the result it returns, and the registry by channel kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from monitoring.models import Notification, NotificationChannel


class TransportError(Exception):
    """A delivery that failed. permanent: retrying cannot help (a 4xx, a refused address, a bad URL);
    otherwise it is retried with backoff (a 5xx, a timeout, a 429, which may say when in retry_after_s)."""

    def __init__(
        self, message: str, *, permanent: bool, status_code: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Sent:
    status_code: int | None = None  # the receiver's HTTP status, or the SMTP reply's; None when there is none


class Transport:
    """One kind of channel. `send` delivers one notification or raises TransportError."""

    kind: ClassVar[str]

    def send(self, *, notification: Notification, channel: NotificationChannel) -> Sent:
        raise NotImplementedError


TRANSPORTS: dict[str, type[Transport]] = {}


def register(kind: str) -> Callable[[type[Transport]], type[Transport]]:
    def add(cls: type[Transport]) -> type[Transport]:
        cls.kind = kind
        TRANSPORTS[kind] = cls
        return cls

    return add


def transport_for(kind: str) -> Transport:
    try:
        return TRANSPORTS[kind]()
    except KeyError:
        raise TransportError(f"No transport for channel kind {kind!r}.", permanent=True) from None


def data_of(notification: Notification) -> dict[str, Any]:
    data = notification.payload.get("data", {})
    return data if isinstance(data, dict) else {}
