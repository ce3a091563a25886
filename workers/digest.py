"""The weekly digest email, per team, to each member who opted in: each deployment's health, the week's alerts
opened and resolved, candidates waiting, with absolute links. Run by the beat (workers.tasks.send_weekly_digests_task)
on Monday mornings for the week before; a second run that week sends nothing (services.digest_claim)."""

from __future__ import annotations

import logging
import smtplib
from datetime import date, datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from monitoring import selectors, services
from monitoring.models import Team

logger = logging.getLogger(__name__)


def render_digest(week: selectors.TeamWeek) -> tuple[str, str, str]:
    context = {"week": week}
    subject = " ".join(render_to_string("emails/digest-subject.txt", context).split())[:200]
    return subject, render_to_string("emails/digest-body.txt", context), render_to_string("emails/digest-body.html", context)


def send_weekly_digests(*, now: datetime, week_start: date | None = None) -> int:
    """Send the week's digest to everyone who wants it and has not had it. Returns how many were sent."""
    week_start = week_start or selectors.last_full_week(now)
    sent = 0
    for team in Team.objects.order_by("pk"):
        recipients = selectors.digest_recipients(team=team)
        if not recipients:
            continue
        subject, text, html = render_digest(selectors.team_week(team=team, week_start=week_start))
        for user_id, address in recipients:
            claim = services.digest_claim(user_id=user_id, team=team, week_start=week_start)
            if claim is None:
                continue
            message = EmailMultiAlternatives(
                subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[address],
                connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
            )
            message.attach_alternative(html, "text/html")
            try:
                message.send(fail_silently=False)
            except (smtplib.SMTPException, OSError) as exc:
                services.digest_release(claim=claim)
                logger.warning("the weekly digest of %s to %s failed: %s", team.slug, address, exc)
                continue
            services.digest_mark_sent(claim=claim)
            sent += 1
    return sent
