"""Alert delivery end to end: an alert committed here, grouped, flushed and delivered by a real `celery worker`
through the real broker to a real HTTP receiver, which verifies the signature with the Standard Webhooks library."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook

from monitoring import services
from monitoring.models import Alert, DeliveryAttempt, Notification
from tests.conftest import wait_for
from tests.receivers import start_http_receiver

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_worker_delivers_a_grouped_alert_once_retrying_after_a_429(celery_worker_process, deployment, approver, settings):
    settings.ALERT_ALLOW_PRIVATE_URLS = True
    receiver = start_http_receiver()
    try:
        receiver.answers.append((429, {"Retry-After": "1"}))
        channel, secret = services.channel_create(team=deployment.team, kind="webhook", name="hook", target=receiver.url,
                                                  by=approver)
        services.routing_rule_create(team=deployment.team, name="all", channels=[channel], min_severity="info",
                                     group_wait_s=0, by=approver)
        # Each call commits (no surrounding transaction), and its on_commit queues the group's flush task.
        services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="d", title="Data drift: f1, f2")

        wait_for(lambda: Notification.objects.filter(status="sent").exists(), timeout=60)
        assert len(receiver.received) == 1
        body = Webhook(secret).verify(receiver.received[0].body, receiver.received[0].headers)
        assert [a["title"] for a in body["data"]["alerts"]] == ["Data drift: f1, f2"]
        notification = Notification.objects.get()
        assert receiver.received[0].headers["webhook-id"] == notification.webhook_id
        assert list(notification.delivery_attempts.values_list("outcome", "status_code")) == [
            (DeliveryAttempt.Outcome.TRANSIENT, 429), (DeliveryAttempt.Outcome.SENT, 200)
        ]
    finally:
        receiver.server.shutdown()
