"""dashboard/views/tokens.py: creating a token (its secret shown once) and revoking it."""

from __future__ import annotations

from django.urls import reverse

from monitoring import services
from monitoring.models import (
    ApiToken,
)

# ---------------------------------------------------------------- jobs, alerts, tokens


def test_an_operator_creates_a_token_and_sees_its_secret_once(client, operator, deployment):
    client.force_login(operator)

    response = client.post(reverse("token-create", args=["tumour"]), {"name": "ingest"})

    token = ApiToken.objects.get(deployment=deployment)
    plaintext = response.context["plaintext"]
    assert plaintext.startswith(f"wk_{token.prefix}_")
    assert services.token_authenticate(raw=plaintext) == token
    assert plaintext in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert plaintext not in client.get(reverse("deployment", args=["tumour"])).content.decode()


def test_an_operator_revokes_a_token(client, operator, deployment):
    token, plaintext = services.token_create(deployment=deployment, name="old", by=operator)
    client.force_login(operator)

    client.post(reverse("token-revoke", args=["tumour", token.pk]))

    assert services.token_authenticate(raw=plaintext) is None
