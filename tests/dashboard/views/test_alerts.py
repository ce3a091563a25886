"""dashboard/views/alerts.py: acknowledging and resolving alerts, and the drift report link."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from monitoring import services
from monitoring.models import (
    Alert,
    DriftReport,
)

# ---------------------------------------------------------------- jobs, alerts, tokens


def test_an_operator_acknowledges_an_alert(client, operator, deployment):
    alert, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="Data drift")
    client.force_login(operator)

    response = client.post(reverse("alert-status", args=[alert.pk]), {"status": "acknowledged", "next": "/alerts"})

    assert response["Location"] == "/alerts"
    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED


def test_a_viewer_cannot_resolve_an_alert(client, viewer, deployment):
    alert, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="Data drift")
    client.force_login(viewer)

    assert client.post(reverse("alert-status", args=[alert.pk]), {"status": "resolved"}).status_code == 403
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN


def test_the_alerts_page_links_a_drift_alert_to_its_report(client, viewer, deployment, outsider):
    report = DriftReport.objects.create(
        deployment=deployment, window_start=timezone.now() - timedelta(hours=24), window_end=timezone.now(),
        n_reference=350, n_current=500, n_drifted=1, share_drifted=1 / 30, drifted=False,
        features=[{"feature": "f3", "test": "ks", "statistic": 0.4, "p_value": 1e-9, "threshold": 0.05 / 30, "drifted": True}],
    )
    services.alert_raise(
        deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="f3 drifted", drift_report=report
    )
    client.force_login(viewer)

    page = client.get(reverse("alerts")).content.decode()

    assert "f3 drifted" in page
    assert reverse("drift-report", args=["tumour", report.pk]) in page
    deployment_page = client.get(reverse("deployment", args=["tumour"])).content.decode()
    assert 'class="row-drifted"' in deployment_page and 'data-chart="drift"' in deployment_page
    report_page = client.get(reverse("drift-report", args=["tumour", report.pk]))
    assert report_page.status_code == 200
    assert 'data-chart="drift-features"' in report_page.content.decode()
    client.force_login(outsider)
    assert client.get(reverse("drift-report", args=["tumour", report.pk])).status_code == 404
    assert "f3 drifted" not in client.get(reverse("alerts")).content.decode()


def test_each_alert_names_its_own_kind_when_it_was_first_seen_and_what_to_do_next(client, operator, deployment):
    report = DriftReport.objects.create(
        deployment=deployment, window_start=timezone.now() - timedelta(hours=24), window_end=timezone.now(),
        n_reference=350, n_current=500, n_drifted=0, share_drifted=0.0, drifted=False, features=[],
    )
    services.alert_raise(
        deployment=deployment, kind=Alert.Kind.CONCEPT_DRIFT, dedup_key="drift:concept", drift_report=report,
        title="Accuracy fell from 93.0% to 58.0% on labelled traffic", figures={"ci_high": -0.2},
    )
    first_seen = timezone.localtime(Alert.objects.get().created_at).strftime("%b %-d, %H:%M")
    client.force_login(operator)

    for url in (reverse("alerts"), reverse("deployment", args=["tumour"])):
        page = client.get(url).content.decode()
        assert "Accuracy drop on labelled traffic" in page and "Data drift" not in page
        assert first_seen in page
        actions = page[page.index("data-next-actions"):]
        assert reverse("drift-report", args=["tumour", report.pk]) in actions[:600]
        assert "?job=retrain#jobs" in actions[:600]

    prefilled = client.get(reverse("deployment", args=["tumour"]) + "?job=retrain").content.decode()
    assert 'value="retrain"' in prefilled and " selected>" in prefilled[prefilled.index('value="retrain"'):][:200]
