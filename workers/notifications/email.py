"""Email through Django's email backend (EMAIL_BACKEND, EMAIL_HOST …), a text and an HTML part rendered from
templates/emails/alert-subject.txt, -body.txt and -body.html."""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from monitoring.models import Notification, NotificationChannel
from workers.notifications.base import Sent, Transport, TransportError, data_of, register

TEMPLATE = "alert"


def render(notification: Notification) -> tuple[str, str, str]:
    """(subject, text, html) of a notification."""
    context = {"event": notification.event, "data": data_of(notification), "webhook_id": notification.webhook_id}
    subject = " ".join(render_to_string(f"emails/{TEMPLATE}-subject.txt", context).split())[:200]
    return (
        subject,
        render_to_string(f"emails/{TEMPLATE}-body.txt", context),
        render_to_string(f"emails/{TEMPLATE}-body.html", context),
    )


@register("email")
class EmailTransport(Transport):
    def send(self, *, notification: Notification, channel: NotificationChannel) -> Sent:
        return send_email(notification, to=list(channel.config.get("to", [])))


def send_direct(notification: Notification) -> Sent:
    """A notification to people rather than a channel: to the addresses it names."""
    return send_email(notification, to=list(notification.recipients))


def send_email(notification: Notification, *, to: list[str]) -> Sent:
    subject, text, html = render(notification)
    message = EmailMultiAlternatives(
        subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=to,
        headers={"X-Watchkeeper-Notification": notification.webhook_id},
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    message.attach_alternative(html, "text/html")
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        raise TransportError(f"The mail server refused the address(es): {sorted(exc.recipients)}", permanent=True) from None
    except smtplib.SMTPResponseException as exc:
        # 5xx: the server refuses for good (bad sender, policy); 4xx: try again later.
        raise TransportError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=exc.smtp_code >= 500,
                             status_code=exc.smtp_code) from None
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise TransportError(f"Could not reach the mail server: {type(exc).__name__}: {exc}", permanent=False) from None
    return Sent(status_code=250)
