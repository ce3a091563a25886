"""Every page and API route, for anonymous, outsider, viewer, operator and approver.

The routes are discovered from the URLconf and the OpenAPI schema, and each must have a rule below: a new route
without one fails `test_every_route_has_a_rule`, so it cannot ship unchecked. Each role's request runs in a
savepoint that is rolled back, so every role sees the same world.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from dashboard.api import api
from monitoring import services
from monitoring.ack_links import ack_token
from monitoring.models import Alert, AlertGroup, AuditEvent, DriftReport, MaintenanceJob, ModelVersion, Role
from tests.conftest import CLASSES, FEATURES, trained_model

PUBLIC, LOGIN, TOKEN = "public", "login", "token"
VIEW, OPERATE, APPROVE = Role.VIEWER, Role.OPERATOR, Role.APPROVER
ROLES = ["anonymous", "outsider", "viewer", "operator", "approver"]
RANK = {"viewer": 0, "operator": 1, "approver": 2}


@dataclass
class World:
    """One deployment with every kind of object a URL can name."""

    slug: str
    candidate: int
    job_id: int
    alert_id: int
    report_id: int
    token_id: int
    token_prefix: str
    token: str
    other_token: str
    batch_id: int
    users: dict[str, User] = field(default_factory=dict)
    # Alert delivery (issue 12): the team's alerting objects, and an acknowledge link for the alert's group.
    team: str = ""
    channel_id: int = 0
    rule_id: int = 0
    silence_id: int = 0
    ack: str = ""

    def kwargs(self) -> dict[str, object]:
        return {
            "slug": self.slug, "number": self.candidate, "job_id": self.job_id, "alert_id": self.alert_id,
            "report_id": self.report_id, "token_id": self.token_id, "prefix": self.token_prefix,
            "batch_id": self.batch_id, "team": self.team, "channel_id": self.channel_id, "rule_id": self.rule_id,
            "silence_id": self.silence_id, "ack": self.ack,
        }


@dataclass(frozen=True)
class Rule:
    method: str
    need: str
    body: Callable[[World], dict] | None = None  # form fields, or JSON for the API
    json: bool = False


def _model_file() -> SimpleUploadedFile:
    return SimpleUploadedFile("model.onnx", trained_model(C=0.25)[0], content_type="application/octet-stream")


def _dataset_file() -> SimpleUploadedFile:
    rows = ",".join(FEATURES) + ",label\n" + ",".join(["0.5"] * len(FEATURES)) + ",1\n"
    return SimpleUploadedFile("data.csv", rows.encode(), content_type="text/csv")


# Pages, by URL name. `need` is the least role that gets past access control.
PAGES: dict[str, Rule] = {
    "login": Rule("GET", PUBLIC),
    "logout": Rule("POST", PUBLIC),
    "password_change": Rule("GET", LOGIN),
    "password_change_done": Rule("GET", LOGIN),
    "healthz": Rule("GET", PUBLIC),
    "readyz": Rule("GET", PUBLIC),
    "favicon": Rule("GET", PUBLIC),
    "overview": Rule("GET", LOGIN),
    "alerts": Rule("GET", LOGIN),
    "alert-status": Rule("POST", OPERATE, lambda w: {"status": "acknowledged"}),
    "deployment": Rule("GET", VIEW),
    "deployment-new": Rule("GET", LOGIN),
    "deployment-settings": Rule("GET", VIEW),
    "deployment-thresholds": Rule("POST", APPROVE, lambda w: {"accuracy": "0.8"}),
    "deployment-drift": Rule("POST", APPROVE, lambda w: {"correction": "bh", "p_value": "0.01"}),
    "tokens": Rule("GET", OPERATE),
    "audit": Rule("GET", VIEW),
    "drift-report": Rule("GET", VIEW),
    "version-new": Rule("GET", OPERATE),
    "dataset-new": Rule("GET", OPERATE),
    "version-approve": Rule("POST", APPROVE, lambda w: {"comment": "looks right"}),
    "version-reject": Rule("POST", APPROVE, lambda w: {"comment": "no"}),
    "version-compare": Rule("GET", VIEW),
    "rollback": Rule("POST", APPROVE, lambda w: {"comment": "back"}),
    "rollout-start": Rule("POST", APPROVE, lambda w: {"comment": "canary"}),
    "rollout-pause": Rule("POST", APPROVE),
    "rollout-resume": Rule("POST", APPROVE),
    "rollout-advance": Rule("POST", APPROVE),
    "rollout-abort": Rule("POST", APPROVE),
    "job-queue": Rule("POST", OPERATE, lambda w: {"kind": "retrain", "version": 1}),
    "job-cancel": Rule("POST", OPERATE),
    "job-progress": Rule("GET", VIEW),
    "token-create": Rule("POST", OPERATE, lambda w: {"name": "ci"}),
    "token-revoke": Rule("POST", OPERATE),
    # Alert delivery: the team's viewers read, its approvers manage; acknowledging needs the operator role.
    "alert-detail": Rule("GET", VIEW),
    "alert-ack": Rule("GET", OPERATE),
    "team-alerting": Rule("GET", VIEW),
    "channel-create": Rule("POST", APPROVE, lambda w: {"kind": "email", "name": "ops", "target": "ops@example.com"}),
    "channel-detail": Rule("GET", VIEW),
    "channel-update": Rule("POST", APPROVE, lambda w: {"name": "renamed", "enabled": "on"}),
    "channel-delete": Rule("POST", APPROVE),
    "channel-test": Rule("POST", APPROVE),
    "rule-create": Rule("POST", APPROVE, lambda w: {
        "name": "r2", "channels": [w.channel_id], "min_severity": "info", "group_wait_s": 0, "group_interval_s": 0,
        "repeat_interval_s": 3600}),
    "rule-delete": Rule("POST", APPROVE),
    "silence-create": Rule("POST", APPROVE, lambda w: {"hours": 1, "comment": "maintenance"}),
    "silence-expire": Rule("POST", APPROVE),
}

# API operations, by (method, path) as the OpenAPI schema names them.
API: dict[tuple[str, str], Rule] = {
    ("GET", "/api/deployments"): Rule("GET", LOGIN),
    ("POST", "/api/deployments"): Rule("POST", OPERATE, lambda w: {
        "name": "New one", "team": "risk-models", "feature_names": FEATURES, "class_labels": CLASSES}, json=True),
    ("GET", "/api/deployments/{slug}"): Rule("GET", VIEW),
    ("POST", "/api/deployments/{slug}/rollback"): Rule("POST", APPROVE, lambda w: {"comment": ""}, json=True),
    ("GET", "/api/deployments/{slug}/versions"): Rule("GET", VIEW),
    ("POST", "/api/deployments/{slug}/versions"): Rule("POST", OPERATE, lambda w: {"file": _model_file()}),
    ("POST", "/api/deployments/{slug}/versions/{number}/approve"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("POST", "/api/deployments/{slug}/versions/{number}/reject"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("GET", "/api/deployments/{slug}/datasets"): Rule("GET", VIEW),
    ("POST", "/api/deployments/{slug}/datasets"): Rule(
        "POST", OPERATE, lambda w: {"file": _dataset_file(), "kind": "evaluation"}),
    ("GET", "/api/deployments/{slug}/tokens"): Rule("GET", OPERATE),
    ("POST", "/api/deployments/{slug}/tokens"): Rule("POST", OPERATE, lambda w: {"name": "ci"}, json=True),
    ("DELETE", "/api/deployments/{slug}/tokens/{prefix}"): Rule("DELETE", OPERATE),
    ("GET", "/api/deployments/{slug}/alerts"): Rule("GET", VIEW),
    ("GET", "/api/deployments/{slug}/jobs"): Rule("GET", VIEW),
    ("POST", "/api/deployments/{slug}/jobs"): Rule("POST", OPERATE, lambda w: {"kind": "retrain"}, json=True),
    ("GET", "/api/jobs/{job_id}"): Rule("GET", VIEW),
    ("POST", "/api/deployments/{slug}/predictions"): Rule("POST", TOKEN, lambda w: {"predictions": []}, json=True),
    ("POST", "/api/deployments/{slug}/predictions/upload"): Rule("POST", TOKEN),
    ("GET", "/api/deployments/{slug}/batches/{batch_id}"): Rule("GET", TOKEN),
    ("POST", "/api/deployments/{slug}/labels"): Rule("POST", TOKEN, lambda w: {"labels": []}, json=True),
    ("POST", "/api/deployments/{slug}/labels/upload"): Rule("POST", TOKEN),
    ("GET", "/api/teams/{team}/channels"): Rule("GET", VIEW),
    ("POST", "/api/teams/{team}/channels"): Rule("POST", APPROVE, lambda w: {
        "kind": "email", "name": "ops", "target": "ops@example.com"}, json=True),
    ("GET", "/api/teams/{team}/channels/{channel_id}"): Rule("GET", VIEW),
    ("DELETE", "/api/teams/{team}/channels/{channel_id}"): Rule("DELETE", APPROVE),
    ("POST", "/api/teams/{team}/channels/{channel_id}/test"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("GET", "/api/teams/{team}/channels/{channel_id}/deliveries"): Rule("GET", VIEW),
    ("GET", "/api/teams/{team}/rules"): Rule("GET", VIEW),
    ("POST", "/api/teams/{team}/rules"): Rule("POST", APPROVE, lambda w: {
        "name": "r2", "channels": [w.channel_id]}, json=True),
    ("DELETE", "/api/teams/{team}/rules/{rule_id}"): Rule("DELETE", APPROVE),
    ("GET", "/api/teams/{team}/silences"): Rule("GET", VIEW),
    ("POST", "/api/teams/{team}/silences"): Rule("POST", APPROVE, lambda w: {
        "ends_at": (timezone.now() + timedelta(hours=1)).isoformat(), "comment": "maintenance"}, json=True),
    ("DELETE", "/api/teams/{team}/silences/{silence_id}"): Rule("DELETE", APPROVE),
    ("GET", "/api/alerts/{alert_id}/notifications"): Rule("GET", VIEW),
    # Progressive rollout (issue 14): viewers read, approvers control.
    ("GET", "/api/deployments/{slug}/rollout-plan"): Rule("GET", VIEW),
    ("PUT", "/api/deployments/{slug}/rollout-plan"): Rule("PUT", APPROVE, lambda w: {"stages": [{"share": 1.0}]}, json=True),
    ("GET", "/api/deployments/{slug}/rollouts"): Rule("GET", VIEW),
    ("POST", "/api/deployments/{slug}/versions/{number}/rollout"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("POST", "/api/deployments/{slug}/rollout/pause"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("POST", "/api/deployments/{slug}/rollout/resume"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("POST", "/api/deployments/{slug}/rollout/advance"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("POST", "/api/deployments/{slug}/rollout/abort"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("PUT", "/api/teams/{team}/channels/{channel_id}/events"): Rule("PUT", APPROVE, lambda w: {"events": []}, json=True),
}

# Routes that are not ours to authorise route by route: Django's admin checks is_staff itself (tested once below),
# and the API's own schema and docs describe routes without revealing data.
NOT_RULED = {"admin", "api"}
# The serving contract's routes (/api/v1/, docs/serving.md) are refused to a missing, wrong or other deployment's
# token in tests/dashboard/api/test_serving.py; they join this matrix when the whole API moves to /api/v1/.
NOT_RULED |= {"api-v1-serving"}
API_DOCUMENTS = {"api:openapi-json", "api:openapi-view"}


def _patterns(resolvers: list, namespace: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in resolvers:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if namespace and entry.namespace else entry.namespace or namespace
            yield from _patterns(entry.url_patterns, inner or "")
        elif isinstance(entry, URLPattern) and entry.name:
            yield namespace, entry


def page_names() -> list[str]:
    return sorted({p.name for ns, p in _patterns(get_resolver().url_patterns) if not ns})


def namespaced_routes() -> set[str]:
    return {f"{ns}:{p.name}" for ns, p in _patterns(get_resolver().url_patterns) if ns}


def api_operations() -> list[tuple[str, str]]:
    schema = api.get_openapi_schema()
    return sorted((method.upper(), path) for path, methods in schema["paths"].items() for method in methods)


def test_every_route_has_a_rule():
    unruled_pages = set(page_names()) - set(PAGES)
    unruled_api = set(api_operations()) - set(API)
    stray = {name for name in namespaced_routes() if name.split(":")[0] not in NOT_RULED}
    assert not unruled_pages, f"add these pages to PAGES: {sorted(unruled_pages)}"
    assert not unruled_api, f"add these API operations to API: {sorted(unruled_api)}"
    assert not stray, f"namespaced routes without a rule: {sorted(stray)}"
    assert set(PAGES) <= set(page_names()) and set(API) <= set(api_operations()), "a rule names a route that is gone"


@pytest.fixture
def world(deployment, approver, operator, viewer, outsider) -> World:
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=operator)
    v1 = deployment.versions.get(number=1)
    job = MaintenanceJob.objects.create(deployment=deployment, source_version=v1, kind="retrain", requested_by=operator)
    channel, _ = services.channel_create(
        team=deployment.team, kind="email", name="oncall", target="oncall@example.com", by=approver
    )
    rule = services.routing_rule_create(team=deployment.team, name="all", channels=[channel], by=approver)
    silence = services.silence_create(
        team=deployment.team, kind=Alert.Kind.JOB_FAILED, ends_at=timezone.now() + timedelta(hours=1), comment="x",
        by=approver,
    )
    alert, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="Drift")
    now = timezone.now()
    report = DriftReport.objects.create(
        deployment=deployment, window_start=now - timedelta(hours=1), window_end=now, n_reference=1, n_current=1
    )
    token, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)
    other = services.deployment_create(
        team=outsider.memberships.get().team, name="Theirs", slug="theirs", feature_names=FEATURES,
        class_labels=CLASSES, by=outsider,
    )
    _, other_plaintext = services.token_create(deployment=other, name="theirs", by=outsider)
    row = {"id": "r-1", "timestamp": "2025-03-01T12:00:00Z", "features": [0.5] * len(FEATURES), "predicted_label": "1"}
    batch = services.predictions_ingest(deployment=deployment, rows=[row])
    return World(
        slug=deployment.slug, candidate=candidate.number, job_id=job.pk, alert_id=alert.pk, report_id=report.pk,
        token_id=token.pk, token_prefix=token.prefix, token=plaintext, other_token=other_plaintext,
        batch_id=batch.batch_id,
        users={"outsider": outsider, "viewer": viewer, "operator": operator, "approver": approver},
        team=deployment.team.slug, channel_id=channel.pk, rule_id=rule.pk, silence_id=silence.pk,
        ack=ack_token(AlertGroup.objects.get(alerts=alert).pk),
    )


def _client(world: World, role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(world.users[role])
    return client


def _send(client: Client, rule: Rule, url: str, world: World, **headers):
    body = rule.body(world) if rule.body else {}
    if rule.method == "GET":
        return client.get(url, **headers)
    if rule.method == "DELETE":
        return client.delete(url, **headers)
    if rule.method == "PUT":
        return client.put(url, data=body, content_type="application/json", **headers)
    if rule.json:
        return client.post(url, data=body, content_type="application/json", **headers)
    return client.post(url, data=body, **headers)


def _in_savepoint(send: Callable[[], object]):
    """Run one request and undo what it wrote, so the next role sees the same world."""
    with transaction.atomic():
        response = send()
        transaction.set_rollback(True)
    return response


def _expected(role: str, need: str, *, api_route: bool) -> str:
    if need == PUBLIC:
        return "allowed"
    if role == "anonymous":
        return "unauthenticated"
    if need == LOGIN:
        return "allowed"
    if role == "outsider":
        return "hidden"
    return "allowed" if RANK[role] >= RANK[need] else "forbidden"


def _outcome(response, *, api_route: bool, need: str = "") -> str:
    status = response.status_code
    if need == PUBLIC and status in (301, 302):
        return "allowed"  # the login page sends a logged-in user on, logout sends everyone to the login page
    if status == 401 or (not api_route and status == 302 and response["Location"].startswith(reverse("login"))):
        return "unauthenticated"
    if status == 404:
        return "hidden"
    if status == 403:
        return "forbidden"
    # 503 is a readiness probe saying a dependency is down: past access control all the same.
    assert status < 500 or status == 503, f"{status}: {response.content[:300]!r}"
    return "allowed"


def _url_for_page(name: str, world: World) -> str:
    pattern = next(p for ns, p in _patterns(get_resolver().url_patterns) if not ns and p.name == name)
    wanted = set(pattern.pattern.converters)
    return reverse(name, kwargs={k: v for k, v in world.kwargs().items() if k in wanted})


@pytest.mark.parametrize("name", sorted(PAGES))
def test_pages_let_in_exactly_the_roles_they_need(name, world):
    rule = PAGES[name]
    url = _url_for_page(name, world)
    seen = {}
    for role in ROLES:
        response = _in_savepoint(lambda: _send(_client(world, role), rule, url, world))
        seen[role] = _outcome(response, api_route=False, need=rule.need)
    assert seen == {role: _expected(role, rule.need, api_route=False) for role in ROLES}


@pytest.mark.parametrize("operation", sorted(API), ids=lambda op: f"{op[0]} {op[1]}")
def test_api_lets_in_exactly_the_roles_it_needs(operation, world):
    rule = API[operation]
    url = operation[1].format(**world.kwargs())
    seen, expected = {}, {}
    for role in ROLES:
        response = _in_savepoint(lambda: _send(_client(world, role), rule, url, world))
        seen[role] = _outcome(response, api_route=True)
        # A session never opens a token route: machines send data with the deployment's token.
        expected[role] = "unauthenticated" if rule.need == TOKEN else _expected(role, rule.need, api_route=True)
    if rule.need == TOKEN:
        for label, token in (("own token", world.token), ("other deployment's token", world.other_token)):
            headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
            response = _in_savepoint(lambda: _send(Client(), rule, url, world, **headers))
            seen[label] = _outcome(response, api_route=True)
        expected |= {"own token": "allowed", "other deployment's token": "forbidden"}
    assert seen == expected


def test_the_admin_is_for_staff_only(world):
    url = reverse("admin:index")
    for role in ROLES:
        response = _client(world, role).get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], role


def test_a_refused_write_leaves_the_candidate_as_it_was(world):
    """The matrix's savepoints hide writes; here a viewer's approval is refused and nothing changed."""
    client = _client(world, "viewer")
    events = AuditEvent.objects.count()
    response = client.post(reverse("version-approve", kwargs={"slug": world.slug, "number": world.candidate}))
    assert response.status_code == 403
    assert ModelVersion.objects.get(deployment__slug=world.slug, number=world.candidate).status == "candidate"
    assert AuditEvent.objects.count() == events
