"""Webhooks signed to the Standard Webhooks spec (standardwebhooks.com), with the `standardwebhooks` library.

Headers `webhook-id` (the notification's, the same on every retry, so a receiver can drop a redelivery),
`webhook-timestamp` (this attempt's, seconds) and `webhook-signature` (v1, HMAC-SHA256 of id.timestamp.body with
the channel's secret). The body is the notification's payload, documented in docs/alerts.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from monitoring.models import Notification, NotificationChannel
from monitoring.sealing import Unsealable, unseal
from workers.notifications import http
from workers.notifications.base import Sent, Transport, TransportError, register


def body_of(notification: Notification) -> bytes:
    return json.dumps(notification.payload, separators=(",", ":"), sort_keys=True).encode()


@register("webhook")
class WebhookTransport(Transport):
    def send(self, *, notification: Notification, channel: NotificationChannel) -> Sent:
        try:
            secret = unseal(channel.secret_sealed)
        except Unsealable as exc:
            raise TransportError(str(exc), permanent=True) from None
        body = body_of(notification)
        now = datetime.now(tz=UTC)
        signature = Webhook(secret).sign(notification.webhook_id, now, body.decode())
        headers = {
            "webhook-id": notification.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        response = http.post(str(channel.config.get("url", "")), body=body, headers=headers)
        return Sent(status_code=response.status_code)
