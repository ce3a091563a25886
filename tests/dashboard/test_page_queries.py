"""Each page's query count does not grow with the number of deployments or with the rows it lists (issue 15).

Every page is requested once to warm what a process caches (content types, the session), then counted with one
deployment or row, then must answer with several in no more queries. bench/pages.py times the same pages at a
year's scale.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard.views.overview import OVERVIEW_PAGE_SIZE
from monitoring import services
from monitoring.models import (
    Alert,
    AuditEvent,
    Deployment,
    DriftFeaturePoint,
    DriftReport,
    EvaluationRun,
    MetricPoint,
)
from tests.builders import make_deployment
from tests.conftest import CLASSES, FEATURES, trained_model

pytestmark = pytest.mark.django_db


def _queries(client, url: str) -> int:
    client.get(url)  # warm-up
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(queries)


def _another_deployment(team, by, i: int) -> Deployment:
    return make_deployment(
        team=team, by=by, name=f"Model {i}", slug=f"model-{i}", feature_names=FEATURES, class_labels=CLASSES,
        model=trained_model()[0], metric_thresholds={"accuracy": 0.9},
    )


def _history(deployment: Deployment, *, hours: int, reports: int, alerts: int) -> None:
    """Hourly scheduled runs on both sources with their points, daily drift reports with their feature points, and
    alerts (some open), all inside the active version's serving period."""
    version = deployment.active_version()
    now = timezone.now()
    runs, points = [], []
    for hour in range(hours, 0, -1):
        at = now - timedelta(hours=hour)
        for source, window in ((EvaluationRun.Source.EVALUATION_SET, None), (EvaluationRun.Source.PRODUCTION, 7)):
            runs.append(EvaluationRun(
                deployment=deployment, version=version, source=source, measured_at=at, n_rows=100,
                status=EvaluationRun.Status.SUCCEEDED, metrics={"accuracy": 0.95, "f1_macro": 0.94},
                window_start=at - timedelta(days=window) if window else None, window_end=at if window else None,
            ))
    EvaluationRun.objects.bulk_create(runs)
    for run in runs:
        points += [
            MetricPoint(deployment=deployment, version=version, run=run, source=run.source, name=name, value=0.95,
                        at=run.measured_at)
            for name in ("accuracy", "f1_macro", "latency_p95_ms")
        ]
    MetricPoint.objects.bulk_create(points)
    features = [
        {"feature": name, "kind": "numeric", "test": "ks", "statistic": 0.1, "p_value": 0.5, "threshold": 0.01,
         "drifted": False, "moved": 0.05, "histogram": {"edges": [0, 1, 2], "reference": [0.5, 0.5], "current": [0.4, 0.6]}}
        for name in FEATURES[:5]
    ]
    for day in range(reports, 0, -1):
        end = now - timedelta(days=day - 1, hours=1)
        report = DriftReport.objects.create(
            deployment=deployment, window_start=end - timedelta(days=1), window_end=end, n_reference=100, n_current=50,
            features=features, n_drifted=0, share_drifted=0.0,
        )
        DriftFeaturePoint.objects.bulk_create(
            DriftFeaturePoint(report=report, deployment=deployment, feature=f["feature"], at=end, test="ks",
                              statistic=0.1, p_value=0.5, threshold=0.01, moved=0.05, drifted=False)
            for f in features
        )
    Alert.objects.bulk_create(
        Alert(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key=f"k{i}", title=f"Alert {i}",
              status=Alert.Status.OPEN if i % 2 else Alert.Status.RESOLVED)
        for i in range(alerts)
    )


def test_the_overview_costs_the_same_queries_for_one_deployment_as_for_several(client, approver, deployment):
    _history(deployment, hours=3, reports=1, alerts=1)
    client.force_login(approver)
    one = _queries(client, reverse("overview"))

    for i in range(4):
        _history(_another_deployment(deployment.team, approver, i), hours=48, reports=3, alerts=4)

    assert Deployment.objects.count() == 5
    assert _queries(client, reverse("overview")) <= one


def test_the_overview_is_paginated_and_draws_sparklines_for_its_page_only(client, approver, deployment):
    _history(deployment, hours=3, reports=0, alerts=0)
    Deployment.objects.bulk_create(
        Deployment(team=deployment.team, slug=f"bulk-{i:02d}", name=f"Bulk {i:02d}") for i in range(OVERVIEW_PAGE_SIZE + 5)
    )
    client.force_login(approver)

    first = client.get(reverse("overview") + "?sort=name")
    second = client.get(reverse("overview") + "?sort=name&page=2")

    assert len(first.context["lines"]) == OVERVIEW_PAGE_SIZE
    assert len(second.context["lines"]) == 6
    assert first.context["totals"]["deployments"] == OVERVIEW_PAGE_SIZE + 6  # totals cover every page
    names = [line.row.summary.deployment.name for line in [*first.context["lines"], *second.context["lines"]]]
    assert names == sorted(names, key=str.lower) and len(set(names)) == OVERVIEW_PAGE_SIZE + 6
    # "Tumour classifier" sorts last by name: its sparkline is drawn on page 2.
    assert second.context["lines"][-1].row.sparkline and b"data-sparkline" in second.content
    assert b'href="?sort=name&amp;page=1"' in second.content


def test_the_deployment_page_costs_the_same_queries_however_long_its_history(client, approver, deployment):
    client.force_login(approver)
    url = reverse("deployment", args=["tumour"]) + "?days=90"
    _history(deployment, hours=2, reports=1, alerts=1)
    one = _queries(client, url)

    _history(deployment, hours=24 * 20, reports=20, alerts=0)
    for C in (0.05, 0.2, 5.0):
        services.version_register(deployment=deployment, data=trained_model(C=C)[0], by=approver)
    Alert.objects.bulk_create(
        Alert(deployment=deployment, kind=Alert.Kind.CONCEPT_DRIFT, dedup_key=f"more{i}", title="More")
        for i in range(12)
    )

    assert _queries(client, url) <= one


def test_the_alerts_list_costs_the_same_queries_for_one_alert_as_for_a_page_of_them(client, approver, deployment):
    client.force_login(approver)
    _history(deployment, hours=0, reports=0, alerts=1)
    Alert.objects.update(status=Alert.Status.OPEN)
    one = _queries(client, reverse("alerts"))

    for i in range(3):
        _history(_another_deployment(deployment.team, approver, i), hours=0, reports=0, alerts=12)

    assert Alert.objects.count() == 37
    assert _queries(client, reverse("alerts")) <= one
    assert _queries(client, reverse("alerts") + "?show=all") <= one


def test_the_drift_pages_cost_the_same_queries_for_one_report_as_for_many(client, approver, deployment):
    client.force_login(approver)
    _history(deployment, hours=0, reports=1, alerts=0)
    report = DriftReport.objects.get()
    one_list = _queries(client, reverse("drift-reports", args=["tumour"]))
    one_report = _queries(client, reverse("drift-report", args=["tumour", report.pk]))

    DriftReport.objects.all().delete()
    _history(deployment, hours=0, reports=30, alerts=0)
    report = DriftReport.objects.order_by("window_end")[15]  # with a previous and a next report

    assert _queries(client, reverse("drift-reports", args=["tumour"])) <= one_list
    assert _queries(client, reverse("drift-report", args=["tumour", report.pk])) <= one_report


def _audited_work(deployment, by, C: float) -> None:
    """A version registered and tagged, an alert acknowledged: events about versions, alerts and the deployment."""
    candidate = services.version_register(deployment=deployment, data=trained_model(C=C)[0], by=by)
    services.version_tag_add(version=candidate, tag=f"c{C}", by=by)
    alert = Alert.objects.create(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key=f"audit-{C}", title="Drift")
    services.alert_set_status(alert=alert, status=Alert.Status.ACKNOWLEDGED, by=by)


def test_the_audit_log_costs_the_same_queries_for_one_event_of_each_kind_as_for_a_page(client, approver, deployment):
    # The log names its objects with one query per object type (not per event): the first count already has
    # an event of each type the page then lists many of.
    client.force_login(approver)
    url = reverse("audit", args=["tumour"])
    _audited_work(deployment, approver, 0.05)
    one = _queries(client, url)

    for C in (0.2, 0.5, 2.0, 5.0, 20.0):
        _audited_work(deployment, approver, C)

    assert AuditEvent.objects.filter(deployment=deployment).count() >= 20
    assert _queries(client, url) <= one


def test_the_approval_page_costs_the_same_queries_with_more_versions(client, approver, deployment):
    client.force_login(approver)
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=approver)
    url = reverse("version-compare", args=["tumour", candidate.number])
    _history(deployment, hours=2, reports=0, alerts=0)
    one = _queries(client, url)

    for C in (0.2, 5.0, 20.0):
        services.version_register(deployment=deployment, data=trained_model(C=C)[0], by=approver)
    _history(deployment, hours=24, reports=0, alerts=0)

    assert _queries(client, url) <= one


def test_the_deployment_page_reads_its_versions_and_serving_periods_once(client, approver, deployment):
    """Its three series, the rollout marks, the headline and the versions table share one read of each (every small
    query is 3-10 ms on a loaded machine: bench/pages.py)."""
    _history(deployment, hours=30, reports=2, alerts=1)
    client.force_login(approver)
    url = reverse("deployment", args=[deployment.slug]) + "?days=7"
    client.get(url)  # warm-up
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    froms = [q["sql"].split(" FROM ", 1)[1].split(None, 1)[0] for q in queries.captured_queries if " FROM " in q["sql"]]

    assert froms.count('"monitoring_servingperiod"') == 1
    # The versions table's list; the approve/rollback buttons' own reads (templatetags/decisions.py) are the rest.
    assert froms.count('"monitoring_modelversion"') <= 3
