"""Machine access: personal access tokens (wkp_) and team service tokens (wks_) on the management API."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from monitoring import services
from monitoring.models import AuditEvent, MachineToken, MaintenanceJob, ModelVersion
from tests.conftest import trained_model
from tests.dashboard.api.helpers import bearer, client_for, onnx_upload, post_json

pytestmark = pytest.mark.django_db


def _personal(user, **kwargs) -> tuple[MachineToken, str]:
    return services.personal_token_create(user=user, name="ci", **kwargs)


def test_a_personal_token_is_shown_once_stored_hashed_and_acts_as_its_owner(deployment, viewer):
    session = client_for(viewer)
    created = post_json(session, "/api/v1/me/tokens", {"name": "laptop", "expires_in_days": 30})

    assert created.status_code == 201, created.content
    plaintext = created.json()["token"]
    assert plaintext.startswith("wkp_") and created.json()["prefix"] == "_".join(plaintext.split("_")[:2])
    stored = MachineToken.objects.get()
    assert plaintext.split("_", 2)[2] not in repr(list(MachineToken.objects.values()))  # only the hash is kept
    assert abs((stored.expires_at - timezone.now()) - timedelta(days=30)) < timedelta(minutes=1)
    listed = session.get("/api/v1/me/tokens").json()["items"]
    assert [t["name"] for t in listed] == ["laptop"] and "token" not in listed[0]
    as_token = Client().get("/api/v1/deployments/tumour", **bearer(plaintext))
    assert as_token.status_code == 200 and as_token.json()["slug"] == "tumour"
    assert AuditEvent.objects.filter(action="token.personal.create", actor=viewer).count() == 1


def test_a_bearer_write_needs_no_csrf_token_but_a_session_write_does(deployment, operator):
    _, plaintext = _personal(operator)
    strict = Client(enforce_csrf_checks=True)

    by_token = strict.post("/api/v1/deployments/tumour/jobs", {"kind": "retrain"}, content_type="application/json",
                           **bearer(plaintext))
    strict.force_login(operator)
    by_cookie = strict.post("/api/v1/deployments/tumour/jobs", {"kind": "retrain"}, content_type="application/json")

    assert by_token.status_code == 201, by_token.content
    assert by_cookie.status_code == 403 and "CSRF" in by_cookie.json()["detail"]
    assert MaintenanceJob.objects.get().requested_by == operator  # the token acted as its owner


@pytest.mark.parametrize("spoil", ["expired", "revoked", "owner deactivated", "wrong secret"])
def test_a_dead_token_gets_401_and_nothing_is_written(deployment, operator, spoil):
    token, plaintext = _personal(operator)
    if spoil == "expired":
        MachineToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif spoil == "revoked":
        services.machine_token_revoke(token=token, by=operator)
    elif spoil == "owner deactivated":
        type(operator).objects.filter(pk=operator.pk).update(is_active=False)
    else:
        plaintext = plaintext[:-2] + ("AA" if not plaintext.endswith("AA") else "BB")
    events = AuditEvent.objects.count()

    response = post_json(Client(), "/api/v1/deployments/tumour/jobs", {"kind": "retrain"}, **bearer(plaintext))

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not MaintenanceJob.objects.exists() and AuditEvent.objects.count() == events
    assert MachineToken.objects.get(pk=token.pk).last_used_at is None


def test_the_ingestion_token_does_not_open_management_routes(deployment, token):
    response = Client().get("/api/v1/deployments/tumour", **bearer(token))

    assert response.status_code == 401 and "ingestion token" in response.json()["detail"]


def test_last_used_is_written_at_most_once_a_minute(deployment, viewer):
    token, plaintext = _personal(viewer)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        Client().get("/api/v1/deployments", **bearer(plaintext))
        first = MachineToken.objects.get(pk=token.pk).last_used_at
        clock.shift(timedelta(seconds=30))
        Client().get("/api/v1/deployments", **bearer(plaintext))
        unchanged = MachineToken.objects.get(pk=token.pk).last_used_at
        clock.shift(timedelta(seconds=31))
        Client().get("/api/v1/deployments", **bearer(plaintext))
        later = MachineToken.objects.get(pk=token.pk).last_used_at

    assert first is not None and unchanged == first
    assert later - first == timedelta(seconds=61)


def test_a_token_cannot_mint_tokens(deployment, approver):
    _, plaintext = _personal(approver)

    mine = post_json(Client(), "/api/v1/me/tokens", {"name": "more"}, **bearer(plaintext))
    service = post_json(Client(), "/api/v1/teams/risk-models/service-tokens", {"name": "x", "role": "viewer"},
                        **bearer(plaintext))

    assert (mine.status_code, service.status_code) == (403, 403)
    assert MachineToken.objects.count() == 1


def test_a_service_token_acts_with_its_own_role_and_is_audited_as_a_token(deployment, approver, operator):
    session = client_for(approver)
    created = post_json(session, "/api/v1/teams/risk-models/service-tokens", {"name": "ci", "role": "operator"})
    assert created.status_code == 201, created.content
    plaintext = created.json()["token"]
    assert plaintext.startswith("wks_") and created.json()["role"] == "operator"

    uploaded = Client().post("/api/v1/deployments/tumour/versions", {"file": onnx_upload(trained_model(C=0.5)[0])},
                             **bearer(plaintext))
    approve = post_json(Client(), "/api/v1/deployments/tumour/versions/2/approve", {}, **bearer(plaintext))

    assert uploaded.status_code == 201, uploaded.content
    assert approve.status_code == 403  # approving stays with people
    assert ModelVersion.objects.get(deployment=deployment, number=2).status == "candidate"
    upload_event = AuditEvent.objects.get(action="version.register", after__version=2)
    assert upload_event.actor_label == created.json()["prefix"]  # wks_<prefix>: the audit shows it was a token
    bot = MachineToken.objects.get(kind="service").user
    assert not bot.has_usable_password()  # it can never log in to the dashboard


def test_a_service_token_approves_only_while_the_team_allows_it(deployment, approver, operator):
    session = client_for(approver)
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=operator)
    refused = post_json(session, "/api/v1/teams/risk-models/service-tokens", {"name": "cd", "role": "approver"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "role"

    allowed = session.put("/api/v1/teams/risk-models", {"service_tokens_may_approve": True}, content_type="application/json")
    plaintext = post_json(session, "/api/v1/teams/risk-models/service-tokens", {"name": "cd", "role": "approver"}).json()["token"]
    approved = post_json(Client(), f"/api/v1/deployments/tumour/versions/{candidate.number}/approve",
                         {"comment": "gates passed"}, **bearer(plaintext))

    assert allowed.status_code == 200 and allowed.json()["service_tokens_may_approve"] is True
    assert approved.status_code == 200, approved.content
    event = AuditEvent.objects.get(action="version.approve")
    assert event.actor_label.startswith("wks_") and event.comment == "gates passed"

    # Turned off again: the token is an operator at once, and cannot roll back.
    session.put("/api/v1/teams/risk-models", {"service_tokens_may_approve": False}, content_type="application/json")
    rollback = post_json(Client(), "/api/v1/deployments/tumour/rollback", {"comment": ""}, **bearer(plaintext))
    assert rollback.status_code == 403
    assert MachineToken.objects.get(kind="service").role == "operator"
    assert deployment.active_version().number == candidate.number


def test_revoking_a_service_token_refuses_it_and_is_audited(deployment, approver):
    session = client_for(approver)
    created = post_json(session, "/api/v1/teams/risk-models/service-tokens", {"name": "ci", "role": "viewer"}).json()

    revoked = session.delete(f"/api/v1/teams/risk-models/service-tokens/{created['prefix']}")
    again = session.delete(f"/api/v1/teams/risk-models/service-tokens/{created['prefix']}")

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # revoking twice is harmless
    assert Client().get("/api/v1/deployments", **bearer(created["token"])).status_code == 401
    assert AuditEvent.objects.filter(action="token.service.revoke").count() == 1


def test_the_account_page_creates_shows_once_and_revokes_a_personal_token(deployment, viewer):
    session = client_for(viewer)
    empty = session.get("/account/tokens/")
    created = session.post("/account/tokens/new", {"name": "notebook", "expires_in_days": "7"})
    token = MachineToken.objects.get()
    listed = session.get("/account/tokens/")
    session.post(f"/account/tokens/{token.pk}/revoke")

    assert b'data-empty="personal-tokens"' in empty.content
    assert created.status_code == 200 and created["Cache-Control"].startswith("max-age=0")
    plaintext = created.content.decode().split('id="token-plaintext">', 1)[1].split("<", 1)[0]
    assert plaintext.startswith(f"wkp_{token.prefix}_") and plaintext not in listed.content.decode()
    assert Client().get("/api/v1/deployments", **bearer(plaintext)).status_code == 401  # revoked
