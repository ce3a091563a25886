"""The weekly digest: opt-in per user from the team's alerting page, one email per team and week with each
deployment's health, the week's alerts opened and resolved and the candidates waiting, with absolute links;
sent once per user and week however often the task runs. Delivered to a real aiosmtpd server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import Client

from monitoring import services
from monitoring.models import Alert, AuditEvent, DigestSent
from tests.conftest import trained_model
from tests.receivers import SmtpReceiver, start_smtp_receiver
from workers.digest import send_weekly_digests

pytestmark = pytest.mark.django_db

WEEK = date(2026, 11, 23)  # a Monday
IN_THE_WEEK = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
RUN_AT = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # the Monday after, when the beat runs


@pytest.fixture
def smtp(settings) -> Iterator[SmtpReceiver]:
    r = start_smtp_receiver()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", r.port, False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.PUBLIC_URL = "http://wk.test"
    yield r
    r.controller.stop()


def _part(message, kind: str) -> str:
    return next(p for p in message.walk() if p.get_content_type() == kind).get_payload(decode=True).decode()


def test_a_member_opts_in_on_the_alerting_page_and_it_is_audited(team, viewer):
    client = Client()
    client.force_login(viewer)
    page = client.get(f"/t/{team.slug}/alerting/")
    assert 'name="weekly_digest"' in page.content.decode() and " checked" not in page.content.decode().split('id="digest"')[1]
    response = client.post(f"/t/{team.slug}/alerting/digest", {"weekly_digest": "on"})
    assert response.status_code == 302
    assert viewer.digest_preference.weekly_digest is True
    assert AuditEvent.objects.filter(action="user.digest", actor=viewer).count() == 1
    assert " checked" in client.get(f"/t/{team.slug}/alerting/").content.decode().split('id="digest"')[1]
    client.post(f"/t/{team.slug}/alerting/digest", {})
    viewer.digest_preference.refresh_from_db()
    assert viewer.digest_preference.weekly_digest is False


def test_an_outsider_cannot_set_a_preference_through_another_team(team, outsider):
    client = Client()
    client.force_login(outsider)
    assert client.post(f"/t/{team.slug}/alerting/digest", {"weekly_digest": "on"}).status_code == 404
    assert not AuditEvent.objects.filter(action="user.digest").exists()


def test_the_digest_goes_once_per_week_to_those_who_opted_in_with_the_weeks_figures(
    deployment, approver, operator, viewer, smtp,
):
    for user, address in ((approver, "alice@example.com"), (operator, "oscar@example.com"), (viewer, "vera@example.com")):
        user.email = address
        user.save()
    services.digest_preference_set(user=approver, weekly_digest=True)
    services.digest_preference_set(user=viewer, weekly_digest=True)  # the operator did not opt in
    opened, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="d",
                                     title="Data drift in 3 of 30 features")
    resolved, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.NO_PREDICTIONS, dedup_key="q",
                                       title="No predictions for 6 h")
    services.alert_resolve_key(deployment=deployment, dedup_key="q")
    Alert.objects.filter(pk=opened.pk).update(created_at=IN_THE_WEEK)
    Alert.objects.filter(pk=resolved.pk).update(created_at=IN_THE_WEEK, resolved_at=IN_THE_WEEK + timedelta(hours=2))
    old, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="old", title="Older")
    Alert.objects.filter(pk=old.pk).update(created_at=IN_THE_WEEK - timedelta(days=14))  # not this week's
    data, recipe = trained_model(C=0.5)
    candidate = services.version_register(deployment=deployment, data=data, by=operator, recipe=recipe)
    Alert.objects.filter(kind=Alert.Kind.CANDIDATE_WAITING).update(created_at=IN_THE_WEEK)
    smtp.mailbox.messages.clear()
    smtp.mailbox.envelopes.clear()

    assert send_weekly_digests(now=RUN_AT) == 2
    assert send_weekly_digests(now=RUN_AT + timedelta(minutes=5)) == 0  # the beat ran twice
    assert sorted(smtp.mailbox.envelopes) == [["alice@example.com"], ["vera@example.com"]]
    assert DigestSent.objects.filter(week_start=WEEK, sent_at__isnull=False).count() == 2
    message = smtp.mailbox.messages[0]
    subject = " ".join(str(message["Subject"]).split())
    assert subject == "[Watchkeeper] Risk models, week of Nov 23: 3 alert(s) opened, 1 resolved, 1 candidate(s) waiting"
    text = _part(message, "text/plain")
    assert "Tumour classifier: needs attention (v1" in text
    assert f"opened [warning] Data drift in 3 of 30 features: http://wk.test/alerts/{opened.pk}/" in text
    assert "Older" not in text and "1 resolved" in text
    assert f"v{candidate.number} waits for review: http://wk.test/d/tumour/versions/{candidate.number}/compare" in text
    html = _part(message, "text/html")
    assert 'href="http://wk.test/d/tumour/"' in html and "http://wk.test/t/risk-models/alerting/" in html


def test_a_digest_the_mail_server_refused_is_tried_again_by_the_next_run(deployment, approver, smtp, settings):
    approver.email = "alice@example.com"
    approver.save()
    services.digest_preference_set(user=approver, weekly_digest=True)
    settings.EMAIL_PORT = 9  # nothing listens there
    assert send_weekly_digests(now=RUN_AT) == 0
    assert not DigestSent.objects.exists()  # the claim was given back
    settings.EMAIL_PORT = smtp.port
    assert send_weekly_digests(now=RUN_AT) == 1 and len(smtp.mailbox.messages) == 1
