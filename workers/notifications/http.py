"""All outbound HTTP of alert delivery goes through here: the one place to point at a test server.

Every request: the URL checked again right before it is sent (monitoring/netsafety.py) and the connection made
to the address that check resolved (the Host header and TLS name stay the URL's), so a DNS answer that changed
since cannot send it inside the network; no redirects followed; a timeout; the response body read up to a cap.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from monitoring import netsafety
from workers.notifications.base import TransportError

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Receivers answer "ok" or a short error; 64 KB is plenty to show why, and bounds what a hostile one can send.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Watchkeeper-Alerts/1"


@dataclass(frozen=True)
class Response:
    status_code: int
    body: bytes


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Response:
    """POST `body` to `url`; a 2xx returns, anything else raises TransportError (permanent or not)."""
    try:
        checked = netsafety.check_url(url, allow_private=settings.ALERT_ALLOW_PRIVATE_URLS)
    except netsafety.UnsafeURL as exc:
        raise TransportError(str(exc), permanent=True) from None
    address = f"[{checked.address}]" if ":" in checked.address else checked.address
    parts = httpx.URL(url)
    pinned = parts.copy_with(host=address.strip("[]"))
    host_header = parts.host if parts.port is None else f"{parts.host}:{parts.port}"
    request_headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", "Host": host_header, **headers}
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST", pinned, content=body, headers=request_headers, extensions={"sni_hostname": parts.host}
            )
            response = client.send(request, stream=True)
            try:
                received = bytearray()
                for chunk in response.iter_bytes():
                    received += chunk
                    if len(received) >= MAX_RESPONSE_BYTES:
                        break
                status = response.status_code
                retry_after = _retry_after(response.headers.get("Retry-After"))
            finally:
                response.close()
    except httpx.TimeoutException:
        raise TransportError(f"The receiver did not answer within {TIMEOUT.read:.0f} s.", permanent=False) from None
    except httpx.HTTPError as exc:
        raise TransportError(f"Could not reach {checked.host}: {type(exc).__name__}: {exc}", permanent=False) from None
    text = bytes(received[:300]).decode("utf-8", "replace")
    if 200 <= status < 300:
        return Response(status_code=status, body=bytes(received))
    if 300 <= status < 400:
        raise TransportError(f"HTTP {status}: redirects are not followed; use the final URL.", permanent=True,
                             status_code=status)
    if status == 429 or status in (408, 425) or status >= 500:
        raise TransportError(f"HTTP {status}: {text}", permanent=False, status_code=status, retry_after_s=retry_after)
    raise TransportError(f"HTTP {status}: {text}", permanent=True, status_code=status)
