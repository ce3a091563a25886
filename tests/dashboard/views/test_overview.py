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


# ---------------------------------------------------------------- sort, filter, sparklines, queries


def _watched(team, by, name: str, *, accuracy: float, alert: str | None = None):
    """A deployment with an active v1, a week of daily evaluation-set scores, an hour of traffic and maybe an alert."""
    from datetime import timedelta

    import numpy as np
    from django.utils import timezone

    from monitoring.blobs import runner_for
    from monitoring.models import Alert
    from tests.builders import make_deployment
    from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model
    from tests.dashboard.views.helpers import _evaluate
    from tests.workers.conftest import ingest_traffic

    _, _, X_test, y_test = breast_cancer_split()
    deployment = make_deployment(
        team=team, by=by, name=name, slug=name.lower().replace(" ", "-"), feature_names=FEATURES, class_labels=CLASSES,
        model=trained_model()[0], holdout=(X_test, y_test), metric_thresholds={"accuracy": 0.9},
    )
    now = timezone.now()
    for days in range(7, 0, -1):
        _evaluate(deployment, deployment.active_version(), accuracy=accuracy + days / 1000, at=now - timedelta(days=days))
    X = np.asarray(X_test[:20])
    ingest_traffic(deployment, X, predicted=runner_for(deployment.active_version()).predict(X).labels,
                   start=now - timedelta(hours=1), prefix=name)
    if alert:
        services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="d", title="Drift", severity=alert)
    return deployment


def test_the_overview_asks_the_same_number_of_queries_for_one_deployment_as_for_four(client, team, approver):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(approver)
    _watched(team, approver, "Alpha", accuracy=0.95, alert="critical")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("overview")).status_code == 200
        return len(captured)

    one = queries()
    for name in ("Beta", "Gamma", "Delta"):
        _watched(team, approver, name, accuracy=0.93, alert="warning")
    four = queries()

    assert four == one
    page = client.get(reverse("overview")).content.decode()
    assert page.count("data-sparkline") == 4 and page.count('data-health="warning"') == 3
    # The batched reads say what the deployment page's own summary says of each deployment.
    from monitoring import selectors

    for row in selectors.deployment_overview(user=approver):
        assert row.summary == selectors.deployment_summary(deployment=row.summary.deployment)


def test_the_overview_sorts_worst_first_and_by_any_column_either_way(client, team, approver):
    _watched(team, approver, "Alpha", accuracy=0.95)
    _watched(team, approver, "Beta", accuracy=0.91, alert="critical")
    _watched(team, approver, "Gamma", accuracy=0.97, alert="warning")
    client.force_login(approver)

    def order(query: str) -> list[str]:
        return [line.row.summary.deployment.name for line in client.get(reverse("overview") + query).context["lines"]]

    assert order("") == ["Beta", "Gamma", "Alpha"]  # critical, warning, healthy
    assert order("?sort=accuracy") == ["Beta", "Alpha", "Gamma"]
    assert order("?sort=-accuracy") == ["Gamma", "Alpha", "Beta"]
    assert order("?sort=-name") == ["Gamma", "Beta", "Alpha"]
    assert order("?sort=nonsense") == ["Beta", "Gamma", "Alpha"]  # an unknown sort falls back to the default
    page = client.get(reverse("overview") + "?sort=accuracy").content.decode()
    assert 'href="?sort=-accuracy" data-sort="accuracy"' in page  # clicking it again reverses


def test_the_overview_filters_by_text_and_health_and_says_what_matched(client, team, approver):
    _watched(team, approver, "Fraud scoring", accuracy=0.95)
    _watched(team, approver, "Fraud review", accuracy=0.91, alert="critical")
    _watched(team, approver, "Churn", accuracy=0.97)
    client.force_login(approver)

    def shown(query: str) -> list[str]:
        return [line.row.summary.deployment.name for line in client.get(reverse("overview") + query).context["lines"]]

    assert shown("?q=fraud") == ["Fraud review", "Fraud scoring"]
    assert shown("?q=fraud&health=healthy") == ["Fraud scoring"]
    assert shown("?q=churn+fraud") == []  # every word must match
    assert shown("?q=risk+churn") == ["Churn"]  # the team's name counts
    page = client.get(reverse("overview") + "?q=nothing-like-it").content.decode()
    assert 'data-empty="no-match"' in page and "Show all 3" in page
    totals = client.get(reverse("overview") + "?q=fraud").context["totals"]
    assert totals["deployments"] == 3  # the stat cards count every deployment, not the filtered few
