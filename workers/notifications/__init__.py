"""Alert delivery: one transport per channel kind, registered by name, and the delivery loop.

Where an alert gets sent: monitoring/services/notifications.py groups alerts and writes the notifications
(the outbox); workers.tasks.deliver_notification_task sends each through `delivery.deliver`."""

from workers.notifications import apprise_urls, email, slack, webhook
from workers.notifications.base import TRANSPORTS, Sent, Transport, TransportError, transport_for

__all__ = ["TRANSPORTS", "Sent", "Transport", "TransportError", "apprise_urls", "email", "slack", "transport_for", "webhook"]
