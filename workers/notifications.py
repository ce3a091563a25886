"""Where an alert gets sent: one transport per channel, each with `notify(alert)`.

In-app needs no delivery: the Alert row is what the dashboard shows. A webhook POSTs the alert as JSON.
All outbound HTTP goes through `HttpTransport.post`, the one place to point at a test server.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from monitoring.models import Alert


class TransportError(Exception):
    """A delivery that did not happen. `permanent` means retrying cannot help (a 4xx, a bad address)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class Transport:
    def notify(self, alert: Alert) -> None:
        raise NotImplementedError


class InApp(Transport):
    def notify(self, alert: Alert) -> None:
        return None  # the alert row itself is the in-app notification


def alert_payload(alert: Alert) -> dict:
    return {
        "id": alert.pk,
        "deployment": alert.deployment.slug,
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "title": alert.title,
        "message": alert.message,
        "occurrences": alert.occurrences,
        "created_at": alert.created_at.isoformat(),
        "last_seen_at": alert.last_seen_at.isoformat(),
    }


class HttpTransport(Transport):
    # A receiver that has not answered in 10 s is down for our purposes; the caller may retry later.
    timeout_s = 10.0

    def post(self, url: str, payload: dict) -> None:
        request = urllib.request.Request(
            url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "watchkeeper"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read(1024)
        except urllib.error.HTTPError as exc:
            # 4xx: the receiver refuses this request and will refuse it again; 5xx: it may recover.
            raise TransportError(f"{url} answered HTTP {exc.code}", permanent=400 <= exc.code < 500) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"{url} could not be reached: {reason}", permanent=False) from None


class Webhook(HttpTransport):
    def __init__(self, url: str):
        if not url.startswith(("http://", "https://")):
            raise TransportError(f"A webhook URL must start with http:// or https://, not {url[:40]!r}", permanent=True)
        self.url = url

    def notify(self, alert: Alert) -> None:
        self.post(self.url, alert_payload(alert))


TRANSPORTS: dict[str, type[Transport]] = {"in_app": InApp, "webhook": Webhook}
