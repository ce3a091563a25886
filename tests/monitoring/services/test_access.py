"""services/access.py: API tokens (stored hashed, revocable) and users."""

from __future__ import annotations

import pytest

from monitoring import services
from monitoring.models import ApiToken, AuditEvent, Membership, Role
from monitoring.services import ValidationFailed

# ---------------------------------------------------------------- tokens


def test_a_token_is_stored_hashed_and_authenticates(deployment, operator):
    token, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)

    prefix, secret = plaintext.split("_")[1], plaintext.split("_", 2)[2]
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert not any(secret in str(value) for value in row.values())
    assert row["prefix"] == prefix and len(row["secret_sha256"]) == 64
    assert services.token_authenticate(raw=plaintext) == token
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_a_wrong_secret_or_a_revoked_token_does_not_authenticate(deployment, operator):
    token, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)

    assert services.token_authenticate(raw=plaintext[:-2] + "xx") is None
    assert services.token_authenticate(raw="not-a-token") is None

    services.token_revoke(token=token, by=operator)

    assert services.token_authenticate(raw=plaintext) is None
    assert AuditEvent.objects.filter(action="token.revoke", object_id=str(token.pk)).exists()


# ---------------------------------------------------------------- users


def test_a_user_is_created_in_a_team_with_a_role(team):
    user = services.user_create(username="nina", password="a long enough passphrase", team=team, role=Role.OPERATOR)

    assert user.check_password("a long enough passphrase")
    assert Membership.objects.get(user=user).role == Role.OPERATOR
    assert AuditEvent.objects.get(action="user.create").after == {"username": "nina", "team": team.slug, "role": "operator"}


def test_a_weak_password_creates_no_user(team):
    with pytest.raises(ValidationFailed, match="too weak"):
        services.user_create(username="nina", password="short", team=team, role=Role.VIEWER)

    assert not Membership.objects.filter(user__username="nina").exists()
    assert not AuditEvent.objects.filter(action="user.create").exists()
