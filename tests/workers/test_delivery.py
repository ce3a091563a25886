"""Alert delivery against real receivers: an HTTP server on 127.0.0.1 (webhooks verified with the Standard
Webhooks library, Slack payloads) and an aiosmtpd SMTP server. Time moves with time-machine, never with sleeps;
the sweep and the delivery run in this process (workers.notifications.delivery), as the tasks call them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from monitoring import services
from monitoring.ack_links import ack_token
from monitoring.models import (
    Alert,
    AlertGroup,
    AuditEvent,
    DeliveryAttempt,
    Notification,
    NotificationChannel,
    RoutingRule,
)
from tests.receivers import HttpReceiver, SmtpReceiver, start_http_receiver, start_smtp_receiver
from workers.notifications import delivery, webhook

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_receivers_allowed(settings):
    settings.ALERT_ALLOW_PRIVATE_URLS = True
    settings.PUBLIC_URL = "http://wk.test"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = start_http_receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def smtp(settings) -> Iterator[SmtpReceiver]:
    r = start_smtp_receiver()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", r.port, False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield r
    r.controller.stop()


@pytest.fixture
def hook(team, approver, receiver) -> tuple[NotificationChannel, str]:
    channel, secret = services.channel_create(team=team, kind="webhook", name="hook", target=receiver.url, by=approver)
    assert secret is not None
    return channel, secret


def _rule(team, approver, channels, **options) -> RoutingRule:
    options.setdefault("min_severity", "info")
    return services.routing_rule_create(team=team, name=options.pop("name", "all"), channels=channels, by=approver, **options)


def _raise(deployment, n: int, *, kind: str = Alert.Kind.DATA_DRIFT, severity: str = "warning") -> list[Alert]:
    return [
        services.alert_raise(deployment=deployment, kind=kind, dedup_key=f"k{i}:{kind}:{severity}",
                             title=f"Feature f{i} drifted", severity=severity)[0]
        for i in range(n)
    ]


def _verify(received, secret: str) -> dict:
    """The Standard Webhooks library's own check of the signature; raises if it does not verify. Checked at the
    moment it was sent (the library refuses timestamps five minutes off, and these tests move the clock)."""
    sent_at = datetime.fromtimestamp(int(received.headers["webhook-timestamp"]), tz=UTC)
    with time_machine.travel(sent_at, tick=False):
        return Webhook(secret).verify(received.body, received.headers)


def _after(seconds: float):
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=False)


def test_five_alerts_in_the_group_window_arrive_as_one_signed_message_naming_all_five(deployment, approver, hook, receiver):
    channel, secret = hook
    _rule(deployment.team, approver, [channel], group_wait_s=30)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        alerts = _raise(deployment, 5)
        assert delivery.deliver_due() == []  # inside group_wait: nothing yet
    with time_machine.travel(start + timedelta(seconds=31), tick=False):
        delivery.deliver_due()
    assert len(receiver.received) == 1
    body = _verify(receiver.received[0], secret)
    assert body["type"] == "alert.firing"
    assert sorted(a["title"] for a in body["data"]["alerts"]) == sorted(a.title for a in alerts)
    assert body["data"]["deployment"]["slug"] == deployment.slug and body["data"]["ack_url"].startswith("http://wk.test/ack/")
    notification = Notification.objects.get()
    assert notification.status == "sent" and notification.webhook_id == receiver.received[0].headers["webhook-id"]
    assert notification.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.SENT


def test_an_open_group_repeats_after_the_repeat_interval_and_its_resolution_is_sent_once(deployment, approver, hook, receiver):
    channel, secret = hook
    _rule(deployment.team, approver, [channel], group_wait_s=0, group_interval_s=300, repeat_interval_s=3600)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _raise(deployment, 2)
        delivery.deliver_due()
    with time_machine.travel(start + timedelta(seconds=1800), tick=False):
        delivery.deliver_due()  # no change, not yet the repeat
    assert len(receiver.received) == 1
    with time_machine.travel(start + timedelta(seconds=3601), tick=False):
        delivery.deliver_due()
    assert len(receiver.received) == 2 and _verify(receiver.received[1], secret)["type"] == "alert.firing"
    with time_machine.travel(start + timedelta(seconds=3700), tick=False):
        services.alert_resolve_key(deployment=deployment, dedup_key="k0:data_drift:warning")
        services.alert_resolve_key(deployment=deployment, dedup_key="k1:data_drift:warning")
        delivery.deliver_due()  # within group_interval of the repeat: held back
        assert len(receiver.received) == 2
    with time_machine.travel(start + timedelta(seconds=3601 + 301), tick=False):
        delivery.deliver_due()
    with time_machine.travel(start + timedelta(days=2), tick=False):
        delivery.deliver_due()
    assert [_verify(r, secret)["type"] for r in receiver.received] == ["alert.firing", "alert.firing", "alert.resolved"]
    assert AlertGroup.objects.get().status == "resolved"


def test_a_silenced_alert_is_left_out_and_a_fully_silenced_group_sends_nothing(deployment, approver, hook, receiver):
    channel, secret = hook
    _rule(deployment.team, approver, [channel], group_wait_s=0)
    services.silence_create(team=deployment.team, kind=Alert.Kind.DATA_DRIFT, ends_at=timezone.now() + timedelta(hours=1),
                            comment="retraining", by=approver)
    drift = _raise(deployment, 1)[0]
    delivery.deliver_due()
    assert receiver.received == []
    assert Alert.objects.get(pk=drift.pk).status == "open"  # still open in-app
    services.alert_raise(deployment=deployment, kind=Alert.Kind.METRIC_BELOW_THRESHOLD, dedup_key="acc",
                         title="Accuracy below 0.9")
    delivery.deliver_due()
    titles = [a["title"] for a in _verify(receiver.received[0], secret)["data"]["alerts"]]
    assert titles == ["Accuracy below 0.9"]
    assert AuditEvent.objects.filter(action="silence.create").count() == 1


def test_routing_sends_by_severity_and_by_kind(deployment, approver, team, receiver):
    critical, _ = services.channel_create(team=team, kind="webhook", name="pager", target=receiver.url + "/pager", by=approver)
    drift, _ = services.channel_create(team=team, kind="webhook", name="drift", target=receiver.url + "/drift", by=approver)
    _rule(team, approver, [critical], name="critical", min_severity="critical", group_wait_s=0)
    _rule(team, approver, [drift], name="drift", kinds=[Alert.Kind.DATA_DRIFT], group_wait_s=0)
    services.alert_raise(deployment=deployment, kind=Alert.Kind.METRIC_BELOW_THRESHOLD, dedup_key="m1", title="warn metric")
    services.alert_raise(deployment=deployment, kind=Alert.Kind.METRIC_BELOW_THRESHOLD, dedup_key="m2",
                         title="critical metric", severity="critical")
    services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="d1", title="drift")
    delivery.deliver_due()
    got = {(r.path, tuple(a["title"] for a in r.json()["data"]["alerts"])) for r in receiver.received}
    assert got == {("/hook/pager", ("critical metric",)), ("/hook/drift", ("drift",))}


def test_acknowledge_link_get_changes_nothing_post_acknowledges_and_stops_repeats(deployment, approver, operator, hook, receiver):
    channel, secret = hook
    _rule(deployment.team, approver, [channel], group_wait_s=0, repeat_interval_s=600)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _raise(deployment, 1)
        delivery.deliver_due()
    ack_url = _verify(receiver.received[0], secret)["data"]["ack_url"]
    path = ack_url.removeprefix("http://wk.test")
    client = Client()
    client.force_login(operator)
    events = AuditEvent.objects.count()
    page = client.get(path)
    assert page.status_code == 200 and b'data-ack-state="confirm"' in page.content
    assert AlertGroup.objects.get().acknowledged_at is None and AuditEvent.objects.count() == events
    done = client.post(path)
    assert b'data-ack-state="done"' in done.content
    group = AlertGroup.objects.get()
    assert group.acknowledged_by == operator and Alert.objects.get().status == "acknowledged"
    assert AuditEvent.objects.filter(action="alert_group.acknowledge", actor=operator).count() == 1
    with time_machine.travel(start + timedelta(seconds=700), tick=False):
        delivery.deliver_due()
    assert len(receiver.received) == 1  # no repeat after the acknowledgement
    events = AuditEvent.objects.count()
    replay = client.post(path)
    assert b'data-ack-state="already"' in replay.content and AuditEvent.objects.count() == events


def test_acknowledge_links_that_expired_or_were_tampered_with_are_refused(deployment, approver, operator, hook, settings):
    channel, _ = hook
    _rule(deployment.team, approver, [channel], group_wait_s=0)
    _raise(deployment, 1)
    group = AlertGroup.objects.get()
    client = Client()
    client.force_login(operator)
    token = ack_token(group.pk)
    value, stamp, signature = token.split(":")
    for tampered in (f"g{group.pk + 1}:{stamp}:{signature}", f"{value}:{stamp}:{signature[:-2]}", "g1"):
        assert client.post(reverse("alert-ack", args=[tampered])).status_code == 400, tampered
    with time_machine.travel(timezone.now() + timedelta(hours=settings.ALERT_ACK_LINK_MAX_AGE_HOURS + 1), tick=False):
        expired = client.post(reverse("alert-ack", args=[token]))
    assert expired.status_code == 410 and b"expired" in expired.content
    assert AlertGroup.objects.get().acknowledged_at is None
    assert not AuditEvent.objects.filter(action="alert_group.acknowledge").exists()


def test_a_receiver_down_then_back_gets_everything_once_in_order(deployment, approver, hook, receiver):
    channel, secret = hook
    _rule(deployment.team, approver, [channel], group_wait_s=0, group_interval_s=60)
    receiver.down = True
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _raise(deployment, 1)
        delivery.deliver_due()
    with time_machine.travel(start + timedelta(seconds=120), tick=False):
        services.alert_raise(deployment=deployment, kind=Alert.Kind.METRIC_BELOW_THRESHOLD, dedup_key="acc", title="acc")
        delivery.deliver_due()
    with time_machine.travel(start + timedelta(seconds=400), tick=False):
        services.alert_resolve_key(deployment=deployment, dedup_key="k0:data_drift:warning")
        services.alert_resolve_key(deployment=deployment, dedup_key="acc")
        delivery.deliver_due()
    assert receiver.received == [] and Notification.objects.count() == 3
    assert DeliveryAttempt.objects.filter(outcome="transient").exists()
    receiver.down = False
    for minutes in range(10, 200, 10):  # the backoffs run out; each sweep sends what is due
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            delivery.deliver_due()
    ids = list(Notification.objects.order_by("pk").values_list("webhook_id", flat=True))
    assert receiver.ids() == ids  # each once, in the order they were written
    assert [_verify(r, secret)["type"] for r in receiver.received] == ["alert.firing", "alert.firing", "alert.resolved"]


def test_a_429_is_retried_when_retry_after_says(deployment, approver, hook, receiver):
    channel, _ = hook
    _rule(deployment.team, approver, [channel], group_wait_s=0)
    receiver.answers.append((429, {"Retry-After": "120"}))
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _raise(deployment, 1)
        delivery.deliver_due()
    notification = Notification.objects.get()
    assert notification.status == "pending" and notification.next_attempt_at == start + timedelta(seconds=120)
    assert notification.delivery_attempts.get().status_code == 429
    with time_machine.travel(start + timedelta(seconds=119), tick=False):
        delivery.deliver_due()
    assert receiver.received == []
    with time_machine.travel(start + timedelta(seconds=121), tick=False):
        delivery.deliver_due()
    assert len(receiver.received) == 1 and Notification.objects.get().status == "sent"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.7/hook", "http://[::1]/hook", "http://192.168.1.1/", "ftp://example.com/x", "http://user:pw@example.com/",
])
def test_urls_inside_the_network_are_refused_and_nothing_is_written(team, approver, settings, url):
    settings.ALERT_ALLOW_PRIVATE_URLS = False
    events = AuditEvent.objects.count()
    with pytest.raises(services.ValidationFailed):
        services.channel_create(team=team, kind="webhook", name="evil", target=url, by=approver)
    with pytest.raises(services.ValidationFailed):
        services.channel_create(team=team, kind="slack", name="evil", target=url, by=approver)
    assert NotificationChannel.objects.count() == 0 and AuditEvent.objects.count() == events


def test_the_channel_form_refuses_an_internal_url_with_a_message(team, approver, settings):
    settings.ALERT_ALLOW_PRIVATE_URLS = False
    client = Client()
    client.force_login(approver)
    response = client.post(reverse("channel-create", args=[team.slug]),
                           {"kind": "webhook", "name": "x", "target": "http://169.254.169.254/"}, follow=True)
    assert b"inside the network" in response.content
    assert NotificationChannel.objects.count() == 0


def test_a_url_that_became_internal_is_refused_at_send_time(deployment, approver, hook, receiver, settings):
    channel, _ = hook
    _rule(deployment.team, approver, [channel], group_wait_s=0)
    settings.ALERT_ALLOW_PRIVATE_URLS = False  # as if the name now resolved inside the network
    _raise(deployment, 1)
    delivery.deliver_due()
    assert receiver.received == []
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == "permanent" and "inside the network" in attempt.error


def test_a_channel_failing_permanently_is_disabled_and_the_team_alerted(deployment, approver, hook, receiver, settings):
    channel, _ = hook
    settings.ALERT_CHANNEL_DISABLE_AFTER = 3
    _rule(deployment.team, approver, [channel], group_wait_s=0, group_interval_s=0, kinds=[Alert.Kind.DATA_DRIFT])
    receiver.answers.extend([(410, {})] * 5)
    for i in range(3):  # each new alert is a change to the group, sent at once (group_interval 0)
        services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key=f"d{i}", title=f"d{i}")
        delivery.deliver_due()
    channel.refresh_from_db()
    assert not channel.enabled and channel.consecutive_failures == 3 and "410" in channel.disabled_reason
    assert Notification.objects.filter(status="failed").count() == 3
    disabled = Alert.objects.get(kind=Alert.Kind.CHANNEL_DISABLED)
    assert disabled.deployment == deployment and "hook" in disabled.title
    assert AuditEvent.objects.filter(action="channel.disable").count() == 1
    # A disabled channel gets nothing more.
    services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="d9", title="d9")
    delivery.deliver_due()
    assert Notification.objects.filter(status="pending").count() == 0
    assert len(receiver.answers) == 2


def test_a_lease_that_runs_out_is_delivered_again_with_the_same_webhook_id(deployment, approver, hook, receiver):
    channel, _ = hook
    _rule(deployment.team, approver, [channel], group_wait_s=0)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _raise(deployment, 1)
        notification_id = delivery.sweep().due[0]
        # A worker claims it, sends it, and is killed before it records anything.
        claimed = services.notification_claim(notification_id=notification_id, now=start)
        assert claimed is not None
        webhook.WebhookTransport().send(notification=claimed, channel=claimed.channel)
        assert delivery.deliver_due() == []  # still leased: nobody else sends it
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        swept = delivery.sweep()
        assert swept.requeued == 1
        delivery.deliver_due()
    assert len(receiver.received) == 2 and len(set(receiver.ids())) == 1  # twice, with one webhook-id: never lost
    assert Notification.objects.get().status == "sent"


def test_email_arrives_at_a_real_smtp_server_with_text_and_html_parts(deployment, approver, team, smtp):
    channel, secret = services.channel_create(team=team, kind="email", name="oncall", target="ops@example.com, ml@example.com", by=approver)
    assert secret is None
    _rule(team, approver, [channel], group_wait_s=0)
    _raise(deployment, 3)
    delivery.deliver_due()
    assert len(smtp.mailbox.messages) == 1
    message = smtp.mailbox.messages[0]
    assert sorted(smtp.mailbox.envelopes[0]) == ["ml@example.com", "ops@example.com"]
    assert "3 alert(s) on Tumour classifier" in message["Subject"]
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in message.walk() if not part.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    for content in parts.values():
        assert "Feature f0 drifted" in content and "Feature f2 drifted" in content and "http://wk.test/ack/" in content
    assert Notification.objects.get().status == "sent"


def test_a_refused_email_address_fails_permanently(deployment, approver, team, smtp):
    async def refuse(server, session, envelope, address, rcpt_options):
        return "550 no such user"

    smtp.mailbox.handle_RCPT = refuse  # type: ignore[attr-defined]
    channel, _ = services.channel_create(team=team, kind="email", name="oncall", target="nobody@example.com", by=approver)
    _rule(team, approver, [channel], group_wait_s=0)
    _raise(deployment, 1)
    delivery.deliver_due()
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == "permanent" and "refused" in attempt.error
    assert smtp.mailbox.messages == []


def test_slack_gets_block_kit_with_severity_and_an_acknowledge_button(deployment, approver, team, receiver):
    channel, secret = services.channel_create(team=team, kind="slack", name="slack", target=receiver.url, by=approver)
    assert secret is None and receiver.url not in str(NotificationChannel.objects.values_list("config", "secret_sealed").get())
    _rule(team, approver, [channel], group_wait_s=0)
    _raise(deployment, 2, severity="critical")
    delivery.deliver_due()
    message = receiver.received[0].json()
    header = message["blocks"][0]["text"]["text"]
    assert "Critical" in header and "Tumour classifier" in header
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert any(b["text"]["text"] == "Acknowledge" and b["url"].startswith("http://wk.test/ack/") for b in buttons)


def test_send_test_delivers_and_records_the_attempt(team, approver, hook, receiver):
    channel, secret = hook
    client = Client()
    client.force_login(approver)
    client.post(reverse("channel-test", args=[team.slug, channel.pk]))
    delivery.deliver_due()
    assert _verify(receiver.received[0], secret)["type"] == "test"
    page = client.get(reverse("channel-detail", args=[team.slug, channel.pk]))
    assert b'data-attempt="sent"' in page.content


def test_a_receiver_down_five_minutes_gets_its_backlog_within_a_minute_of_coming_back(
    deployment, approver, hook, receiver, team,
):
    """The sweep runs every 15 s; the first retry to find the receiver back releases the channel's backlog."""
    channel, secret = hook
    _rule(team, approver, [channel], group_wait_s=0, group_interval_s=0)
    other = services.deployment_create(team=team, name="Second", slug="second", feature_names=["a"],
                                       class_labels=["0", "1"], by=approver)
    receiver.down = True
    start = timezone.now()
    for second in range(0, 300, 15):  # five minutes down: alerts open, change and resolve on two deployments
        with time_machine.travel(start + timedelta(seconds=second), tick=False):
            if second == 0:
                _raise(deployment, 1)
                services.alert_raise(deployment=other, kind=Alert.Kind.NO_PREDICTIONS, dedup_key="q", title="quiet")
            if second == 60:
                services.alert_raise(deployment=deployment, kind=Alert.Kind.CONCEPT_DRIFT, dedup_key="c", title="acc")
            if second == 120:
                services.alert_resolve_key(deployment=other, dedup_key="q")
            delivery.deliver_due()
    assert receiver.received == [] and Notification.objects.count() == 4
    receiver.down = False
    back = start + timedelta(seconds=300)
    arrived_by = None
    for second in range(0, 120, 15):
        with time_machine.travel(back + timedelta(seconds=second), tick=False):
            delivery.deliver_due()
        if len(receiver.received) == 4 and arrived_by is None:
            arrived_by = second
    assert arrived_by is not None and arrived_by <= 60
    assert sorted(receiver.ids()) == sorted(Notification.objects.values_list("webhook_id", flat=True))  # each once
    for group in AlertGroup.objects.all():  # in order within each group
        ids = list(group.notifications.order_by("pk").values_list("webhook_id", flat=True))
        assert [i for i in receiver.ids() if i in ids] == ids
    assert {_verify(r, secret)["type"] for r in receiver.received} == {"alert.firing", "alert.resolved"}


def test_a_success_on_the_channel_does_not_release_a_row_a_retry_after_put_off(deployment, approver, hook, receiver, team):
    channel, _ = hook
    _rule(team, approver, [channel], group_wait_s=0)
    other = services.deployment_create(team=team, name="Second", slug="second", feature_names=["a"],
                                       class_labels=["0", "1"], by=approver)
    receiver.answers.append((429, {"Retry-After": "600"}))
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _raise(deployment, 1)
        delivery.deliver_due()
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        services.alert_raise(deployment=other, kind=Alert.Kind.NO_PREDICTIONS, dedup_key="q", title="quiet")
        delivery.deliver_due()  # this one is sent, which releases backoffs but not the Retry-After
    assert len(receiver.received) == 1
    assert Notification.objects.filter(status="pending").get().next_attempt_at == start + timedelta(seconds=600)
