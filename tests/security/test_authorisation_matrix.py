"""Every page and API route, for anonymous, outsider, viewer, operator and approver, and every API route also for
each kind of bearer token: personal access tokens of each of those users, team service tokens of each role, the
deployment's ingestion token, and an expired and a revoked token (401, nothing written). The ingestion routes take
personal and service tokens with the operator role beside the ingestion token.

The routes are discovered from the URLconf and the OpenAPI schema, and each must have a rule below: a new route
without one fails `test_every_route_has_a_rule`, so it cannot ship unchecked. Each role's request runs in a
savepoint that is rolled back, so every role sees the same world.
"""

from __future__ import annotations

import json
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
from monitoring.models import (
    Alert,
    AlertGroup,
    ApiToken,
    AuditEvent,
    Dataset,
    Deployment,
    DriftReport,
    MachineToken,
    MaintenanceJob,
    ModelVersion,
    NotificationChannel,
    PredictionBatch,
    Role,
    Rollout,
    RolloutPlan,
    RoutingRule,
    Silence,
)
from tests.conftest import CLASSES, FEATURES, trained_model

PUBLIC, LOGIN, TOKEN = "public", "login", "token"
# /metrics: Prometheus's bearer token (METRICS_TOKEN) only; no dashboard login opens it, whatever its role.
METRICS = "metrics"
METRICS_TOKEN = "matrix-metrics-token-0123456789"
# Ingestion: the deployment's token, or a personal or service token with the operator role.
INGEST = "ingest"
OWNER = "owner"  # the viewer's own personal token: only she sees it; everyone else gets 404
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
    # Machine access (issue 13): a live bearer token per principal, by label ("wkp viewer", "wks operator", …).
    bearers: dict[str, str] = field(default_factory=dict)
    personal_prefix: str = ""
    personal_token_id: int = 0
    service_prefix: str = ""

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
    session_only: bool = False  # token management: a bearer token gets 403, whatever its role
    prefix: str = ""  # which token a {prefix} in the path names: "personal", "service" or the ingestion token


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
    "metrics": Rule("GET", METRICS),
    "favicon": Rule("GET", PUBLIC),
    "overview": Rule("GET", LOGIN),
    "alerts": Rule("GET", LOGIN),
    "alert-status": Rule("POST", OPERATE, lambda w: {"status": "acknowledged"}),
    "deployment": Rule("GET", VIEW),
    "deployment-new": Rule("GET", LOGIN),
    "deployment-settings": Rule("GET", VIEW),
    "deployment-thresholds": Rule("POST", APPROVE, lambda w: {"accuracy": "0.8"}),
    "deployment-drift": Rule("POST", APPROVE, lambda w: {"correction": "bh", "p_value": "0.01"}),
    "deployment-labels": Rule("POST", APPROVE, lambda w: {"labels_stopped_hours": "12"}),
    "deployment-retention": Rule("POST", APPROVE, lambda w: {"retain_predictions_days": "60", "retain_reports_days": ""}),
    "deployment-rollout-plan": Rule("POST", APPROVE, lambda w: {"stage_share": ["100"], "stage_minutes": [""], "stage_predictions": [""]}),
    "tokens": Rule("GET", OPERATE),
    "audit": Rule("GET", VIEW),
    "drift-report": Rule("GET", VIEW),
    "version-new": Rule("GET", OPERATE),
    "dataset-new": Rule("GET", OPERATE),
    "version-approve": Rule("POST", APPROVE, lambda w: {"comment": "looks right"}),
    "version-reject": Rule("POST", APPROVE, lambda w: {"comment": "no"}),
    "version-compare": Rule("GET", VIEW),
    "version": Rule("GET", VIEW),
    "version-model": Rule("GET", VIEW),
    "version-recipe": Rule("GET", VIEW),
    "version-tag-add": Rule("POST", OPERATE, lambda w: {"tag": "baseline"}),
    "version-tag-remove": Rule("POST", OPERATE, lambda w: {"tag": "baseline"}),
    "drift-reports": Rule("GET", VIEW),
    "audit-csv": Rule("GET", VIEW),
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
    # Your own personal access tokens: any logged-in user; a token of someone else's is 404.
    "account-tokens": Rule("GET", LOGIN),
    "account-token-create": Rule("POST", LOGIN, lambda w: {"name": "ci", "expires_in_days": "30"}),
    "account-token-revoke": Rule("POST", OWNER),
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
    "rule-edit": Rule("POST", APPROVE, lambda w: {
        "name": "renamed", "channels": [w.channel_id], "min_severity": "info", "group_wait_s": 0,
        "group_interval_s": 0, "repeat_interval_s": 3600}),
    "rule-delete": Rule("POST", APPROVE),
    "digest-preference": Rule("POST", VIEW, lambda w: {"weekly_digest": "on"}),
    "silence-create": Rule("POST", APPROVE, lambda w: {"hours": 1, "comment": "maintenance"}),
    "silence-expire": Rule("POST", APPROVE),
}

# API operations, by (method, path) as the OpenAPI schema names them.
API: dict[tuple[str, str], Rule] = {
    ("GET", "/api/v1/deployments"): Rule("GET", LOGIN),
    ("POST", "/api/v1/deployments"): Rule("POST", OPERATE, lambda w: {
        "name": "New one", "team": "risk-models", "feature_names": FEATURES, "class_labels": CLASSES}, json=True),
    ("GET", "/api/v1/deployments/{slug}"): Rule("GET", VIEW),
    ("GET", "/api/v1/deployments/{slug}/retention"): Rule("GET", VIEW),
    ("PUT", "/api/v1/deployments/{slug}/retention"): Rule(
        "PUT", APPROVE, lambda w: {"retain_predictions_days": 60, "retain_reports_days": None}, json=True),
    ("POST", "/api/v1/deployments/{slug}/rollback"): Rule("POST", APPROVE, lambda w: {"comment": ""}, json=True),
    ("GET", "/api/v1/deployments/{slug}/versions"): Rule("GET", VIEW),
    ("POST", "/api/v1/deployments/{slug}/versions"): Rule("POST", OPERATE, lambda w: {"file": _model_file()}),
    ("POST", "/api/v1/deployments/{slug}/versions/{number}/approve"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("POST", "/api/v1/deployments/{slug}/versions/{number}/reject"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("GET", "/api/v1/deployments/{slug}/datasets"): Rule("GET", VIEW),
    ("POST", "/api/v1/deployments/{slug}/datasets"): Rule(
        "POST", OPERATE, lambda w: {"file": _dataset_file(), "kind": "evaluation"}),
    ("GET", "/api/v1/deployments/{slug}/tokens"): Rule("GET", OPERATE),
    ("POST", "/api/v1/deployments/{slug}/tokens"): Rule("POST", OPERATE, lambda w: {"name": "ci"}, json=True),
    ("DELETE", "/api/v1/deployments/{slug}/tokens/{prefix}"): Rule("DELETE", OPERATE),
    ("GET", "/api/v1/deployments/{slug}/alerts"): Rule("GET", VIEW),
    ("GET", "/api/v1/deployments/{slug}/jobs"): Rule("GET", VIEW),
    ("POST", "/api/v1/deployments/{slug}/jobs"): Rule("POST", OPERATE, lambda w: {"kind": "retrain"}, json=True),
    ("GET", "/api/v1/jobs/{job_id}"): Rule("GET", VIEW),
    ("POST", "/api/v1/deployments/{slug}/predictions"): Rule("POST", INGEST, lambda w: {"predictions": []}, json=True),
    ("POST", "/api/v1/deployments/{slug}/predictions/upload"): Rule("POST", INGEST),
    ("GET", "/api/v1/deployments/{slug}/batches/{batch_id}"): Rule("GET", INGEST),
    ("POST", "/api/v1/deployments/{slug}/labels"): Rule("POST", INGEST, lambda w: {"labels": []}, json=True),
    # The serving contract (docs/serving.md): the deployment's own token; the public key is public.
    ("GET", "/api/v1/deployments/{slug}/serving"): Rule("GET", TOKEN, lambda w: {"instance": "pod-1"}),
    ("GET", "/api/v1/deployments/{slug}/versions/{number}/model"): Rule("GET", TOKEN),
    ("GET", "/api/v1/signing-key"): Rule("GET", PUBLIC),
    ("POST", "/api/v1/deployments/{slug}/labels/upload"): Rule("POST", INGEST),
    ("GET", "/api/v1/teams/{team}/channels"): Rule("GET", VIEW),
    ("POST", "/api/v1/teams/{team}/channels"): Rule("POST", APPROVE, lambda w: {
        "kind": "email", "name": "ops", "target": "ops@example.com"}, json=True),
    ("GET", "/api/v1/teams/{team}/channels/{channel_id}"): Rule("GET", VIEW),
    ("DELETE", "/api/v1/teams/{team}/channels/{channel_id}"): Rule("DELETE", APPROVE),
    ("POST", "/api/v1/teams/{team}/channels/{channel_id}/test"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("GET", "/api/v1/teams/{team}/channels/{channel_id}/deliveries"): Rule("GET", VIEW),
    ("GET", "/api/v1/teams/{team}/rules"): Rule("GET", VIEW),
    ("POST", "/api/v1/teams/{team}/rules"): Rule("POST", APPROVE, lambda w: {
        "name": "r2", "channels": [w.channel_id]}, json=True),
    ("GET", "/api/v1/teams/{team}/rules/{rule_id}"): Rule("GET", VIEW),
    ("PUT", "/api/v1/teams/{team}/rules/{rule_id}"): Rule("PUT", APPROVE, lambda w: {
        "name": "renamed", "channels": [w.channel_id]}, json=True),
    ("PATCH", "/api/v1/teams/{team}/rules/{rule_id}"): Rule("PATCH", APPROVE, lambda w: {"min_severity": "info"}, json=True),
    ("DELETE", "/api/v1/teams/{team}/rules/{rule_id}"): Rule("DELETE", APPROVE),
    ("GET", "/api/v1/teams/{team}/silences"): Rule("GET", VIEW),
    ("POST", "/api/v1/teams/{team}/silences"): Rule("POST", APPROVE, lambda w: {
        "ends_at": (timezone.now() + timedelta(hours=1)).isoformat(), "comment": "maintenance"}, json=True),
    ("DELETE", "/api/v1/teams/{team}/silences/{silence_id}"): Rule("DELETE", APPROVE),
    ("GET", "/api/v1/alerts/{alert_id}/notifications"): Rule("GET", VIEW),
    # Read endpoints and their CSV twins (issue 13): any member of the team.
    **{("GET", f"/api/v1/deployments/{{slug}}/{name}{suffix}"): Rule("GET", VIEW)
       for name in ("evaluations", "metrics", "drift-reports", "drift-features", "audit") for suffix in ("", ".csv")},
    ("GET", "/api/v1/deployments/{slug}/alerts.csv"): Rule("GET", VIEW),
    # Machine access: tokens are minted and revoked from a session only.
    ("GET", "/api/v1/me/tokens"): Rule("GET", LOGIN),
    ("POST", "/api/v1/me/tokens"): Rule("POST", LOGIN, lambda w: {"name": "ci"}, json=True, session_only=True),
    ("DELETE", "/api/v1/me/tokens/{prefix}"): Rule("DELETE", OWNER, session_only=True, prefix="personal"),
    ("GET", "/api/v1/teams/{team}/service-tokens"): Rule("GET", APPROVE),
    ("POST", "/api/v1/teams/{team}/service-tokens"): Rule(
        "POST", APPROVE, lambda w: {"name": "ci", "role": "operator"}, json=True, session_only=True),
    ("DELETE", "/api/v1/teams/{team}/service-tokens/{prefix}"): Rule(
        "DELETE", APPROVE, session_only=True, prefix="service"),
    ("GET", "/api/v1/teams/{team}"): Rule("GET", VIEW),
    ("PUT", "/api/v1/teams/{team}"): Rule(
        "PUT", APPROVE, lambda w: {"service_tokens_may_approve": False}, json=True, session_only=True),
    # Progressive rollout (issue 14): viewers read, approvers control.
    ("GET", "/api/v1/deployments/{slug}/rollout-plan"): Rule("GET", VIEW),
    ("PUT", "/api/v1/deployments/{slug}/rollout-plan"): Rule("PUT", APPROVE, lambda w: {"stages": [{"share": 1.0}]}, json=True),
    ("GET", "/api/v1/deployments/{slug}/rollouts"): Rule("GET", VIEW),
    ("POST", "/api/v1/deployments/{slug}/versions/{number}/rollout"): Rule("POST", APPROVE, lambda w: {"comment": "canary"}, json=True),
    ("POST", "/api/v1/deployments/{slug}/rollout/pause"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("POST", "/api/v1/deployments/{slug}/rollout/resume"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("POST", "/api/v1/deployments/{slug}/rollout/advance"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("POST", "/api/v1/deployments/{slug}/rollout/abort"): Rule("POST", APPROVE, lambda w: {}, json=True),
    ("PUT", "/api/v1/teams/{team}/channels/{channel_id}/events"): Rule("PUT", APPROVE, lambda w: {"events": []}, json=True),
}

# Routes that are not ours to authorise route by route: Django's admin checks is_staff itself (tested once below),
# and the API's own schema and docs describe routes without revealing data.
NOT_RULED = {"admin", "api", "api-deprecated"}  # the old /api/ paths are the same views (see test_api_v1.py)
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
    model, recipe = trained_model(C=0.5)  # with its recipe, so the recipe download has a file to refuse or give
    candidate = services.version_register(deployment=deployment, data=model, recipe=recipe, by=operator)
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
    bearers = {
        f"wkp {role}": services.personal_token_create(user=user, name=role)[1]
        for role, user in (("outsider", outsider), ("viewer", viewer), ("operator", operator), ("approver", approver))
    }
    services.team_service_approval_set(team=deployment.team, allowed=True, by=approver)
    for role in (VIEW, OPERATE, APPROVE):
        bearers[f"wks {role}"] = services.service_token_create(team=deployment.team, name=role, role=role, by=approver)[1]
    bearers["wk ingestion"] = plaintext
    expired, bearers["expired wkp"] = services.personal_token_create(user=approver, name="old")
    MachineToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked, bearers["revoked wks"] = services.service_token_create(team=deployment.team, name="gone", role=OPERATE, by=approver)
    services.machine_token_revoke(token=revoked, by=approver)
    personal = MachineToken.objects.filter(user=viewer, kind="personal").get()
    service = MachineToken.objects.filter(team=deployment.team, role=VIEW).get()
    return World(
        slug=deployment.slug, candidate=candidate.number, job_id=job.pk, alert_id=alert.pk, report_id=report.pk,
        token_id=token.pk, token_prefix=token.prefix, token=plaintext, other_token=other_plaintext,
        batch_id=batch.batch_id,
        users={"outsider": outsider, "viewer": viewer, "operator": operator, "approver": approver},
        team=deployment.team.slug, channel_id=channel.pk, rule_id=rule.pk, silence_id=silence.pk,
        ack=ack_token(AlertGroup.objects.get(alerts=alert).pk),
        bearers=bearers, personal_prefix=personal.display, personal_token_id=personal.pk,
        service_prefix=service.display,
    )


def _client(world: World, role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(world.users[role])
    return client


def _send(client: Client, rule: Rule, url: str, world: World, **headers):
    body = rule.body(world) if rule.body else {}
    if rule.method == "GET":
        return client.get(url, data=body, **headers)  # a GET's `body` is its query
    if rule.method == "DELETE":
        return client.delete(url, **headers)
    if rule.method in ("PUT", "PATCH"):
        return client.generic(rule.method, url, data=json.dumps(body), content_type="application/json", **headers)
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
    if need == METRICS:
        return "unauthenticated"  # 401: no session is the metrics token
    if role == "anonymous":
        return "unauthenticated"
    if need == LOGIN:
        return "allowed"
    if need == OWNER:
        return "allowed" if role == "viewer" else "hidden"
    if role == "outsider":
        return "hidden"
    return "allowed" if RANK[role] >= RANK[need] else "forbidden"


def _expected_for_bearer(label: str, rule: Rule) -> str:
    """A personal token has its owner's role, a service token its own; they open an ingestion route with the
    operator role, and never the serving contract; the ingestion token opens nothing else. Expired and revoked
    tokens open nothing."""
    kind, role = label.split(" ", 1)
    if rule.need == PUBLIC:
        return "allowed"  # no authentication at all: a bearer header, good or bad, is not read
    if kind in ("expired", "revoked"):
        return "unauthenticated"
    if rule.need == INGEST:
        return "allowed" if kind == "wk" else _expected(role, OPERATE, api_route=True)
    if (kind == "wk") != (rule.need == TOKEN):
        return "unauthenticated"
    if kind == "wk":
        return "allowed"
    if rule.session_only:
        return "forbidden"
    if kind == "wks" and rule.need == OWNER:
        return "hidden"  # a service token has no personal tokens
    return _expected(role, rule.need, api_route=True)


# What a refused request must leave untouched: every kind of row an API route can write.
WRITTEN = [AuditEvent, ModelVersion, Dataset, MaintenanceJob, ApiToken, MachineToken, NotificationChannel,
           RoutingRule, Silence, PredictionBatch, Deployment, Rollout, RolloutPlan]


def _snapshot() -> tuple:
    counts = tuple(model.objects.count() for model in WRITTEN)
    tokens = tuple(MachineToken.objects.order_by("pk").values_list("last_used_at", "revoked_at", "role"))
    return counts, tokens


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
    # The account pages' token is the viewer's personal token, not the deployment's ingestion token.
    kwargs = world.kwargs() | ({"token_id": world.personal_token_id} if name.startswith("account-") else {})
    return reverse(name, kwargs={k: v for k, v in kwargs.items() if k in wanted})


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETS = METRICS_TOKEN, []


def test_the_metrics_token_opens_metrics_and_nothing_else(world):
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {METRICS_TOKEN}"}

    assert Client().get(reverse("metrics"), **bearer).status_code == 200
    assert Client().get(reverse("overview"), **bearer).status_code == 302  # to the login page
    response = Client().get(f"/api/v1/deployments/{world.slug}", **bearer)
    assert response.status_code == 401


@pytest.mark.parametrize("name", sorted(PAGES))
def test_pages_let_in_exactly_the_roles_they_need(name, world):
    rule = PAGES[name]
    url = _url_for_page(name, world)
    seen = {}
    for role in ROLES:
        response = _in_savepoint(lambda: _send(_client(world, role), rule, url, world))
        seen[role] = _outcome(response, api_route=False, need=rule.need)
    assert seen == {role: _expected(role, rule.need, api_route=False) for role in ROLES}


def _api_url(operation: tuple[str, str], rule: Rule, world: World) -> str:
    prefix = {"personal": world.personal_prefix, "service": world.service_prefix}.get(rule.prefix, world.token_prefix)
    return operation[1].format(**(world.kwargs() | {"prefix": prefix}))


def _refused_in_savepoint(send: Callable[[], object]):
    """Run one request, and if it was refused, check that it wrote nothing. A live token refused for its role
    (403, 404) was used, and says so in its last_used_at; an unauthenticated request (401) touches nothing."""
    with transaction.atomic():
        before = _snapshot()
        response = send()
        after = _snapshot()
        if response.status_code == 401:
            assert after == before, "a 401 wrote something"
        elif response.status_code in (403, 404):
            assert after[0] == before[0], f"a refused request ({response.status_code}) wrote something"
        transaction.set_rollback(True)
    return response


@pytest.mark.parametrize("operation", sorted(API), ids=lambda op: f"{op[0]} {op[1]}")
def test_api_lets_in_exactly_the_roles_it_needs(operation, world):
    rule = API[operation]
    url = _api_url(operation, rule, world)
    seen, expected = {}, {}
    for role in ROLES:
        response = _refused_in_savepoint(lambda: _send(_client(world, role), rule, url, world))
        seen[role] = _outcome(response, api_route=True)
        # A session never opens a token route: machines send data with the deployment's token.
        expected[role] = "unauthenticated" if rule.need in (TOKEN, INGEST) else _expected(role, rule.need, api_route=True)
    for label, bearer in world.bearers.items():
        headers = {"HTTP_AUTHORIZATION": f"Bearer {bearer}"}
        response = _refused_in_savepoint(lambda: _send(Client(), rule, url, world, **headers))
        seen[label] = _outcome(response, api_route=True)
        expected[label] = _expected_for_bearer(label, rule)
        if seen[label] == "unauthenticated":
            assert response["Content-Type"] == "application/problem+json", label
    if rule.need in (TOKEN, INGEST):
        for label, token in (("own token", world.token), ("other deployment's token", world.other_token)):
            headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
            response = _refused_in_savepoint(lambda: _send(Client(), rule, url, world, **headers))
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
