"""dashboard/views/tokens.py: creating a token (its secret shown once) and revoking it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from django.test import Client
from django.urls import reverse

from monitoring import services
from monitoring.models import (
    ApiToken,
    Prediction,
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


# ---------------------------------------------------------------- the token page's examples


def test_the_token_page_shows_examples_in_the_deployments_own_features_and_classes(client, operator, team):
    deployment = services.deployment_create(
        team=team, name="Tumour screening", feature_names=["mean radius", "mean texture"],
        class_labels=["benign", "malignant"], by=operator,
    )
    client.force_login(operator)

    response = client.get(reverse("tokens", args=[deployment.slug]))

    assert response.status_code == 200
    snippets = response.context["snippets"]
    for text in (snippets.curl, snippets.python):
        assert '"mean radius": 0.0' in text and '"mean texture": 0.0' in text
        assert '"predicted_label": "benign"' in text
    assert '"http://testserver/api/v1/deployments/tumour-screening/predictions"' in snippets.curl
    assert 'API = "http://testserver/api/v1/deployments/tumour-screening/"' in snippets.python
    assert "$WATCHKEEPER_TOKEN" in snippets.curl and 'os.environ["WATCHKEEPER_TOKEN"]' in snippets.python
    assert 'data-snippet="curl"' in response.content.decode()


def test_a_viewer_has_no_token_page(client, viewer, deployment):
    client.force_login(viewer)

    assert client.get(reverse("tokens", args=["tumour"])).status_code == 403


def _run_example(live_server, operator, which: str) -> None:
    """Create a token on the page, as a browser at the live server would, and run the example it shows."""
    client = Client(HTTP_HOST=live_server.url.removeprefix("http://"))
    client.force_login(operator)
    response = client.post(reverse("token-create", args=["tumour"]), {"name": "example"})
    snippets = response.context["snippets"]
    assert response.context["plaintext"] in getattr(snippets, which)
    command = [sys.executable, "-c", snippets.python] if which == "python" else ["bash", "-c", snippets.curl]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.django_db(transaction=True)
def test_the_python_example_shown_with_a_new_token_sends_a_prediction_and_its_label(live_server, operator, deployment):
    _run_example(live_server, operator, "python")

    row = Prediction.objects.get(deployment=deployment, request_id="req-1")
    assert row.label_index == 0  # the example labels it with the first class


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_example_shown_with_a_new_token_sends_a_prediction_and_its_label(live_server, operator, deployment):
    _run_example(live_server, operator, "curl")

    row = Prediction.objects.get(deployment=deployment, request_id="req-1")
    assert row.label_index == 0
