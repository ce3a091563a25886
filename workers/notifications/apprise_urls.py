"""Any other service (Teams, Discord, PagerDuty, Telegram, ntfy …) through an Apprise URL.

Apprise makes its own HTTP requests, so the connection cannot be pinned to a checked address as
workers/notifications/http.py does; for the schemes whose host the user chooses (json://, xml://, form://) the
host is checked again right before sending instead. Apprise reports only success or failure, so a failure is
treated as transient (retried for a day), unless the URL itself no longer parses.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from monitoring import netsafety
from monitoring.models import Notification, NotificationChannel
from monitoring.sealing import Unsealable, unseal
from monitoring.services.channels import APPRISE_USER_HOST_SCHEMES
from workers.notifications.base import Sent, Transport, TransportError, data_of, register
from workers.notifications.email import render


@register("apprise")
class AppriseTransport(Transport):
    def send(self, *, notification: Notification, channel: NotificationChannel) -> Sent:
        import apprise

        try:
            url = unseal(channel.secret_sealed)
        except Unsealable as exc:
            raise TransportError(str(exc), permanent=True) from None
        scheme = urlsplit(url).scheme.lower()
        if scheme in APPRISE_USER_HOST_SCHEMES:
            try:
                netsafety.check_host(urlsplit(url).hostname or "", 443, allow_private=settings.ALERT_ALLOW_PRIVATE_URLS)
            except netsafety.UnsafeURL as exc:
                raise TransportError(str(exc), permanent=True) from None
        target = apprise.Apprise()
        if not target.add(url):
            raise TransportError("Apprise no longer understands this URL.", permanent=True)
        subject, text, _ = render(notification)
        severity = str(data_of(notification).get("severity", "info"))
        notify_type = {"critical": apprise.NotifyType.FAILURE, "warning": apprise.NotifyType.WARNING}.get(
            severity, apprise.NotifyType.INFO
        )
        if notification.event == Notification.Event.RESOLVED:
            notify_type = apprise.NotifyType.SUCCESS
        if not target.notify(title=subject, body=text, notify_type=notify_type):
            raise TransportError(f"Apprise could not deliver to {scheme}:// (see the worker's log).", permanent=False)
        return Sent()
