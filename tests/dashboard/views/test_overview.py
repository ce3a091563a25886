"""dashboard/views/overview.py: who sees which deployments, and the empty overview."""

from __future__ import annotations

from django.urls import reverse

from monitoring import services
from monitoring.models import (
    MaintenanceJob,
    ModelVersion,
)
from tests.dashboard.views.helpers import _audit_count

# ---------------------------------------------------------------- visibility


def test_the_overview_lists_only_the_users_deployments(client, viewer, deployment, outsider):
    other_team = outsider.memberships.get().team
    services.deployment_create(
        team=other_team, name="Secret fraud model", feature_names=["a", "b"], class_labels=["0", "1"], by=outsider
    )
    client.force_login(viewer)

    response = client.get(reverse("overview"))

    assert response.status_code == 200
    assert [s.deployment.slug for s in response.context["summaries"]] == ["tumour"]
    assert b"Tumour classifier" in response.content
    assert b"Secret fraud model" not in response.content


def test_an_outsider_gets_404_for_another_teams_deployment(client, outsider, deployment):
    client.force_login(outsider)

    for url in ["/d/tumour/", "/d/tumour/audit", "/d/tumour/versions/new"]:
        assert client.get(url).status_code == 404


def test_an_outsider_cannot_approve_and_nothing_changes(client, outsider, candidate):
    client.force_login(outsider)
    before = _audit_count()

    response = client.post(reverse("version-approve", args=["tumour", candidate.number]), {"comment": "mine now"})

    assert response.status_code == 404
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE
    assert _audit_count() == before


def test_an_outsider_cannot_read_a_jobs_progress(client, outsider, deployment):
    job = MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.active_version(), kind=MaintenanceJob.Kind.COMPRESS_INT8
    )
    client.force_login(outsider)

    assert client.get(reverse("job-progress", args=[job.pk])).status_code == 404


# ---------------------------------------------------------------- charts, static files, empty states


def test_the_overview_explains_how_to_start_when_there_are_no_deployments(client, viewer):
    client.force_login(viewer)

    page = client.get(reverse("overview")).content.decode()

    assert "No deployments yet" in page
    # A viewer cannot create one: the page says what would let them, and offers no form they would be refused.
    assert "Creating one needs the operator role in a team" in page and reverse("deployment-new") not in page
