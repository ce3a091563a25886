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


def _rule(api, team, **fields) -> dict:
    channel = api.post(f"/api/v1/teams/{team.slug}/channels", {"kind": "email", "name": "ops", "target": "ops@example.com"},
                       content_type="application/json").json()
    body = {"name": "drift", "channels": [channel["id"]], "kinds": ["data_drift"], "min_severity": "critical"} | fields
    created = api.post(f"/api/v1/teams/{team.slug}/rules", body, content_type="application/json")
    assert created.status_code == 201, created.content
    return created.json()


def test_a_rule_is_changed_by_patch_and_replaced_by_put_each_audited(api, team, deployment):
    rule = _rule(api, team)
    url = f"/api/v1/teams/{team.slug}/rules/{rule['id']}"
    patched = api.patch(url, {"min_severity": "warning", "deployment": deployment.slug}, content_type="application/json")
    assert patched.status_code == 200, patched.content
    assert patched.json() | {} == rule | {"min_severity": "warning", "deployment": deployment.slug}
    event = AuditEvent.objects.filter(action="routing_rule.update").get()
    assert event.before["min_severity"] == "critical" and event.after["min_severity"] == "warning"
    assert event.after["deployment"] == deployment.slug and event.actor.username == "alice"
    replaced = api.put(url, {"name": "everything", "channels": rule["channels"]}, content_type="application/json")
    assert replaced.status_code == 200
    assert replaced.json() | {"id": 0} == {
        "id": 0, "name": "everything", "deployment": None, "min_severity": "warning", "kinds": [],
        "channels": rule["channels"], "group_wait_s": 30, "group_interval_s": 300, "repeat_interval_s": 14400,
    }
    assert api.get(url).json()["name"] == "everything"
    assert AuditEvent.objects.filter(action="routing_rule.update").count() == 2


@pytest.mark.parametrize("body, field", [
    ({"repeat_interval_s": 5}, "repeat_interval_s"),
    ({"kinds": ["no_such_kind"]}, "kinds"),
    ({"channels": []}, "channels"),
    ({"channels": [999999]}, "channels"),
    ({"deployment": "no-such-deployment"}, "deployment"),
])
def test_a_bad_rule_change_is_a_422_naming_the_field_and_writes_nothing(api, team, deployment, body, field):
    rule = _rule(api, team)
    events = AuditEvent.objects.count()
    response = api.patch(f"/api/v1/teams/{team.slug}/rules/{rule['id']}", body, content_type="application/json")
    assert response.status_code == 422, response.content
    assert response.json()["errors"][0]["field"] == field
    stored = RoutingRule.objects.get()
    assert (stored.min_severity, stored.kinds, stored.repeat_interval_s, stored.deployment) == (
        "critical", ["data_drift"], 4 * 3600, None)
    assert [c.pk for c in stored.channels.all()] == rule["channels"]
    assert AuditEvent.objects.count() == events


def test_a_viewer_cannot_change_a_rule_and_nothing_is_written(api, team, viewer):
    rule = _rule(api, team)
    events = AuditEvent.objects.count()
    client = Client()
    client.force_login(viewer)
    response = client.patch(f"/api/v1/teams/{team.slug}/rules/{rule['id']}", {"min_severity": "info"},
                            content_type="application/json")
    assert response.status_code == 403
    assert RoutingRule.objects.get().min_severity == "critical" and AuditEvent.objects.count() == events


def test_the_rule_form_on_the_team_page_edits_a_rule(api, team, deployment):
    rule = _rule(api, team)
    page = api.get(f"/t/{team.slug}/alerting/")
    edit_url = f"/t/{team.slug}/alerting/rules/{rule['id']}/edit"
    assert edit_url in page.content.decode()
    form = api.get(edit_url)
    assert form.status_code == 200 and 'value="drift"' in form.content.decode()
    fields = {"name": "drift on tumour", "deployment": deployment.pk, "min_severity": "warning",
              "kinds": ["data_drift", "concept_drift"], "channels": rule["channels"], "group_wait_s": 10,
              "group_interval_s": 60, "repeat_interval_s": 3600}
    saved = api.post(edit_url, fields)
    assert saved.status_code == 302
    stored = RoutingRule.objects.get()
    assert (stored.name, stored.deployment, stored.kinds, stored.group_wait_s) == (
        "drift on tumour", deployment, ["concept_drift", "data_drift"], 10)
    assert AuditEvent.objects.filter(action="routing_rule.update").count() == 1
    bad = api.post(edit_url, fields | {"repeat_interval_s": 5, "name": "x"})
    assert bad.status_code == 400 and "Repeat interval" in bad.content.decode()
    assert RoutingRule.objects.get().name == "drift on tumour"
    assert AuditEvent.objects.filter(action="routing_rule.update").count() == 1
