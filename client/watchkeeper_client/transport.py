"""The client's one way out: HTTP through a urllib3 pool, with the token and timeouts, and errors sorted into
worth-retrying (Unreachable) and not (Refused). Nothing here logs the token or a response body."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import urllib3

from watchkeeper_client import __version__
from watchkeeper_client.errors import Refused, Unreachable

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Response:
    status: int
    headers: Any  # urllib3's HTTPHeaderDict: case-insensitive
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _detail(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        detail = str(data.get("detail") or data.get("title") or data)
        errors = data.get("errors")
        if errors:
            detail += f" {errors[:5]}"
        return detail
    return str(data)[:200]


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; None when absent or an HTTP date (the server sends seconds)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Transport:
    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0, pool_size: int = 8):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        # pool_size: the senders, the poll and a labels call each hold a connection. retries=False: the callers own retrying (a prediction batch is retried with its Idempotency-Key).
        self._pool = urllib3.PoolManager(maxsize=pool_size, retries=False, block=False)

    def __repr__(self) -> str:  # never the token
        return f"Transport({self.base_url!r})"

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
        auth: bool = True, timeout: float | None = None, ok: tuple[int, ...] = (200,),
    ) -> Response:
        """The response if its status is in `ok`; Unreachable on a network error or a retryable status;
        Refused on any other."""
        sent = {"User-Agent": f"watchkeeper-client/{__version__}", **(headers or {})}
        if auth:
            sent["Authorization"] = f"Bearer {self._token}"
        try:
            raw = self._pool.request(
                method, self.url(path), body=body, headers=sent, redirect=False,
                timeout=urllib3.Timeout(connect=min(5.0, self.timeout), read=timeout or self.timeout),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        response = Response(raw.status, raw.headers, raw.data)
        if raw.status in ok:
            return response
        if raw.status in RETRYABLE_STATUS:
            raise Unreachable(f"{method} {path}: {raw.status} {_detail(raw.data)}",
                              retry_after=_retry_after(raw.headers.get("Retry-After")))
        raise Refused(raw.status, _detail(raw.data))

    def close(self) -> None:
        self._pool.clear()
