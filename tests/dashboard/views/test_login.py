"""Logging in and out (dashboard/logins.py and the login page)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from monitoring.models import (
    ModelVersion,
)

# ---------------------------------------------------------------- login


@pytest.mark.parametrize(
    "url",
    ["/", "/alerts", "/d/tumour/", "/d/tumour/audit", "/d/tumour/versions/new", "/d/tumour/drift/1/", "/jobs/1/progress"],
)
def test_every_page_sends_anonymous_visitors_to_the_login_page(client, deployment, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_a_user_logs_in_and_lands_on_the_overview(client, viewer, deployment):
    response = client.post(reverse("login"), {"username": "vera", "password": "correct-horse-battery"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("overview")
    assert b"Tumour classifier" in response.content


def test_actions_refuse_a_post_without_a_csrf_token(approver, candidate):
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)

    response = client.post(reverse("version-approve", args=["tumour", candidate.number]), {"comment": "ok"})

    assert response.status_code == 403
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE
