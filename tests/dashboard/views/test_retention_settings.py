"""The settings page's Retention card: what is kept (settings, the oldest stored batch, the next purge), and
the approvers' form to change it (validated, audited)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.urls import reverse
from django.utils import timezone

from monitoring import selectors, services
from monitoring.models import AuditEvent


def _ingest_one(deployment, *, at: datetime) -> None:
    row = {"id": "r-1", "timestamp": at.isoformat(), "features": [0.5] * deployment.n_features, "predicted_label": "1"}
    services.predictions_ingest(deployment=deployment, rows=[row])


def test_the_page_says_what_is_kept_the_oldest_batch_and_the_next_purge(client, viewer, deployment):
    at = (timezone.now() - timedelta(days=40)).replace(microsecond=0)
    _ingest_one(deployment, at=at)
    client.force_login(viewer)

    page = client.get(reverse("deployment-settings", args=["tumour"])).content.decode()

    assert "kept 90 days · 1 row in 1 batch, the oldest from " + at.strftime("%b %-d, %Y %H:%M") in page
    assert "kept 365 days" in page and "then the last of each day" in page
    next_purge = selectors.next_purge_at(timezone.now())
    assert next_purge.strftime("%b %-d, %Y %H:%M") + " UTC" in page
    # A viewer reads it; only approvers get the form.
    assert 'data-form="retention"' not in page


def test_an_approver_changes_the_retention_and_the_change_is_audited(client, approver, deployment):
    client.force_login(approver)

    response = client.post(reverse("deployment-retention", args=["tumour"]),
                           {"retain_predictions_days": "30", "retain_reports_days": ""})

    assert response.status_code == 302 and response.url.endswith("#retention")
    deployment.refresh_from_db()
    assert (deployment.retain_predictions_days, deployment.retain_reports_days) == (30, None)
    event = AuditEvent.objects.get(action="deployment.retention_configure")
    assert event.actor == approver and event.after == {"retain_predictions_days": 30, "retain_reports_days": None}
    page = client.get(reverse("deployment-settings", args=["tumour"])).content.decode()
    assert "Retention saved" in page and "kept 30 days" in page and "Drift reports</dt>\n    <dd data-retention=\"reports\">kept for ever" in page


def test_a_retention_shorter_than_the_evaluation_window_is_refused_and_nothing_changes(client, approver, deployment):
    client.force_login(approver)
    events = AuditEvent.objects.count()

    response = client.post(reverse("deployment-retention", args=["tumour"]),
                           {"retain_predictions_days": "2", "retain_reports_days": "365"})

    assert response.status_code == 422
    assert "from 7 to 3650 (the evaluation and drift windows read 7 days back)" in response.content.decode()
    assert 'value="2"' in response.content.decode()  # what was typed stays in the form
    deployment.refresh_from_db()
    assert deployment.retain_predictions_days == 90 and AuditEvent.objects.count() == events


def test_a_retention_that_is_not_a_number_is_a_400_and_nothing_changes(client, approver, deployment):
    client.force_login(approver)

    response = client.post(reverse("deployment-retention", args=["tumour"]),
                           {"retain_predictions_days": "a year", "retain_reports_days": "365"})

    assert response.status_code == 400
    assert "A whole number of days, or empty to keep for ever." in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.retain_predictions_days == 90
    assert not AuditEvent.objects.filter(action="deployment.retention_configure").exists()


def test_an_operator_cannot_change_the_retention(client, operator, deployment):
    client.force_login(operator)

    response = client.post(reverse("deployment-retention", args=["tumour"]), {"retain_predictions_days": "7"})

    assert response.status_code == 403
    deployment.refresh_from_db()
    assert deployment.retain_predictions_days == 90
    assert not AuditEvent.objects.filter(action="deployment.retention_configure").exists()


def test_the_last_purge_is_shown(client, viewer, deployment):
    services.deployment_purge(deployment=deployment, now=datetime(2026, 6, 1, 12, tzinfo=UTC))
    client.force_login(viewer)

    page = client.get(reverse("deployment-settings", args=["tumour"])).content.decode()

    assert "the last, Jun 1, 2026 12:00, deleted 0 batches (0 rows), 0 reports" in page
