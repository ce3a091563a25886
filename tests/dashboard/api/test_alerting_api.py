"""The alerting API: channels (a webhook's secret once), rules, silences, and refusals that write nothing."""

from __future__ import annotations

import pytest
from django.test import Client

from monitoring.models import AuditEvent, NotificationChannel, RoutingRule
from monitoring.sealing import unseal

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(approver) -> Client:
    client = Client()
    client.force_login(approver)
    return client


def test_a_webhook_channel_returns_its_signing_secret_once_and_keeps_it_sealed(api, team, settings):
    settings.ALERT_ALLOW_PRIVATE_URLS = True
    created = api.post(f"/api/v1/teams/{team.slug}/channels", {"kind": "webhook", "name": "hook", "target": "http://127.0.0.1:9/x"},
                       content_type="application/json")
    assert created.status_code == 201, created.content
    secret = created.json()["signing_secret"]
    assert secret.startswith("whsec_")
    channel = NotificationChannel.objects.get()
    assert secret not in channel.secret_sealed and unseal(channel.secret_sealed) == secret
    listed = api.get(f"/api/v1/teams/{team.slug}/channels")
    assert secret not in listed.content.decode() and listed.json()["items"][0]["target"] == "http://127.0.0.1:9/x"


def test_an_internal_url_is_a_422_and_nothing_is_written(api, team, settings):
    settings.ALERT_ALLOW_PRIVATE_URLS = False
    events = AuditEvent.objects.count()
    response = api.post(f"/api/v1/teams/{team.slug}/channels",
                        {"kind": "webhook", "name": "metadata", "target": "http://169.254.169.254/latest"},
                        content_type="application/json")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "target"
    assert NotificationChannel.objects.count() == 0 and AuditEvent.objects.count() == events


def test_a_rule_naming_another_teams_channel_is_refused(api, team, outsider, deployment):
    from monitoring import services

    theirs, _ = services.channel_create(team=outsider.memberships.get().team, kind="email", name="x",
                                        target="x@example.com", by=outsider)
    response = api.post(f"/api/v1/teams/{team.slug}/rules", {"name": "r", "channels": [theirs.pk]},
                        content_type="application/json")
    assert response.status_code == 422
    assert RoutingRule.objects.count() == 0


def test_rules_and_silences_round_trip(api, team, deployment):
    channel = api.post(f"/api/v1/teams/{team.slug}/channels", {"kind": "email", "name": "ops", "target": "ops@example.com"},
                       content_type="application/json").json()
    rule = api.post(f"/api/v1/teams/{team.slug}/rules", {"name": "drift", "channels": [channel["id"]], "deployment": deployment.slug,
                    "kinds": ["data_drift"], "min_severity": "critical", "group_wait_s": 0}, content_type="application/json")
    assert rule.status_code == 201 and rule.json()["deployment"] == deployment.slug
    bad = api.post(f"/api/v1/teams/{team.slug}/silences", {"ends_at": "2000-01-01T00:00:00Z", "comment": "past"},
                   content_type="application/json")
    assert bad.status_code == 422
    assert api.get(f"/api/v1/teams/{team.slug}/silences").json()["items"] == []
