"""Events for CD systems: a subscribed webhook channel receives each rollout event once, signed (Standard
Webhooks), delivered by the real worker to a local HTTP receiver; unsubscribed types are not sent."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook

from monitoring import services
from monitoring.models import Notification
from tests.conftest import trained_model, wait_for
from tests.dashboard.api.helpers import client_for
from tests.receivers import start_http_receiver

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
STAGES = [{"share": 0.1}, {"share": 0.5}, {"share": 1.0}]


def test_a_subscribed_channel_gets_each_rollout_event_once_and_signed(
    celery_worker_process, deployment, approver, operator, settings
):
    settings.ALERT_ALLOW_PRIVATE_URLS = True
    receiver = start_http_receiver()
    try:
        channel, secret = services.channel_create(team=deployment.team, kind="webhook", name="cd", target=receiver.url,
                                                  by=approver)
        response = client_for(approver).put(
            f"/api/v1/teams/{deployment.team.slug}/channels/{channel.pk}/events",
            data={"events": ["version.registered", "rollout.started", "rollout.advanced", "rollout.completed"]},
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        candidate = services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)
        rollout = services.rollout_start(version=candidate, by=approver, comment="canary", stages=STAGES)
        rollout = services.rollout_advance(rollout=rollout, from_stage=0, by=approver)
        services.rollout_advance(rollout=rollout, from_stage=1, by=None)

        wait_for(lambda: Notification.objects.filter(status="sent").count() == 4, timeout=60)
        bodies = [Webhook(secret).verify(r.body, r.headers) for r in receiver.received]
        # version.approved was not subscribed to, so it was not sent.
        assert sorted(b["type"] for b in bodies) == [
            "rollout.advanced", "rollout.completed", "rollout.started", "version.registered"]
        assert len(receiver.received) == len({r.headers["webhook-id"] for r in receiver.received}) == 4  # once each
        completed = next(b for b in bodies if b["type"] == "rollout.completed")["data"]
        assert completed | {"rollout": None} == {
            "deployment": "tumour", "team": deployment.team.slug, "rollout": None, "candidate": 2,
            "active_version": 2, "state": "completed", "stage": 2, "stages": 3, "share": 0.0, "by": "worker",
            "outcome": "completed", "reason": ""}
    finally:
        receiver.server.shutdown()


def test_unknown_event_types_are_refused_and_nothing_is_subscribed(deployment, approver):
    channel, _ = services.channel_create(team=deployment.team, kind="email", name="m", target="a@example.com", by=approver)
    with pytest.raises(services.ValidationFailed, match="Only webhook channels"):
        services.channel_events_set(channel=channel, events=["rollout.started"], by=approver)
    channel.refresh_from_db()
    assert "events" not in channel.config
