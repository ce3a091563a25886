"""Time on the deployment page, in a real browser: the health history a maintenance job leaves alone, a custom
range kept in the URL, one time axis for every chart (zoom one, the others follow), and drift points that open
their report. Debian's chromium through Playwright against the live server."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from monitoring.models import Deployment, EvaluationRun, MaintenanceJob
from tests.browser.test_approval import (  # noqa: F401
    _log_in,
    browser,
    deployment_with_history,
    sync_api,
)
from tests.conftest import breast_cancer_split
from tests.workers.conftest import ingest_traffic
from workers.drift_check import check_drift
from workers.evaluation import evaluate_versions

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
expect = sync_api.expect

TRACES = "id => document.getElementById(id).data.map(t => ({name: t.name, x: t.x, y: t.y}))"
X_RANGE = "id => document.getElementById(id).layout.xaxis.range.map(String)"


def _deployment_page(page, live_server, query: str = ""):
    page.goto(f"{live_server.url}/d/tumour/{query}")
    page.wait_for_selector("body[data-charts-ready=true]")


def _drift_checks(deployment: Deployment, n: int) -> list:
    """n real drift checks, 6 hours apart, each on its own window of scaled holdout traffic."""
    _, _, X_test, _ = breast_cancer_split()
    now = timezone.now()
    reports = []
    for i in range(n):
        end = now - timedelta(hours=6 * (n - 1 - i))
        X = X_test[i * 50:(i + 1) * 50] * (1.0 + 0.2 * i)
        ingest_traffic(deployment, X, predicted=np.zeros(len(X), dtype=int), start=end - timedelta(hours=1),
                       spacing=timedelta(seconds=30), prefix=f"w{i}")
        reports.append(check_drift(deployment=deployment, window_start=end - timedelta(hours=2), window_end=end))
    return reports


def test_the_health_chart_is_unchanged_after_a_maintenance_job_evaluates_a_candidate(
    browser, live_server, approver, operator, deployment_with_history
):
    deployment = deployment_with_history
    page = _log_in(browser, live_server, "alice")
    _deployment_page(page, live_server)
    before = page.evaluate(f"({TRACES})('chart-metrics')")
    headline = page.locator("[data-headline=accuracy]").text_content()

    # What a maintenance job does once it has a candidate: score it and its source on the same rows, as that job.
    active, candidate = deployment.active_version(), deployment.versions.get(status="candidate")
    job = MaintenanceJob.objects.create(
        deployment=deployment, source_version=active, kind=MaintenanceJob.Kind.COMPRESS_INT8, requested_by=operator,
        status=MaintenanceJob.Status.RUNNING, progress=80, candidate=candidate,
    )
    runs = evaluate_versions(versions=[active, candidate], source=EvaluationRun.Source.EVALUATION_SET, job=job, raise_alerts=False)
    assert len(runs) == 2 and all(run.status == EvaluationRun.Status.SUCCEEDED for run in runs)

    _deployment_page(page, live_server)

    assert page.evaluate(f"({TRACES})('chart-metrics')") == before
    expect(page.locator("[data-headline=accuracy]")).to_have_text(headline)


def test_a_custom_range_in_the_url_is_drawn_in_the_viewers_zone_and_kept_by_the_picker(
    browser, live_server, approver, deployment_with_history
):
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    end = timezone.now().astimezone(tokyo).replace(second=0, microsecond=0) - timedelta(days=2)
    start = end - timedelta(days=5)
    page = _log_in(browser, live_server, "alice", timezone_id="Asia/Tokyo")
    _deployment_page(page, live_server, f"?from={start:%Y-%m-%dT%H:%M}&to={end:%Y-%m-%dT%H:%M}")

    assert page.evaluate(f"({X_RANGE})('chart-metrics')") == [f"{start:%Y-%m-%d %H:%M:%S}", f"{end:%Y-%m-%d %H:%M:%S}"]
    xs = [x for trace in page.evaluate(f"({TRACES})('chart-metrics')") for x in trace["x"]]
    assert xs and all(f"{start:%Y-%m-%d %H:%M:%S}" <= x <= f"{end:%Y-%m-%d %H:%M:%S}" for x in xs)
    expect(page.locator("input[name=from]")).to_have_value(f"{start:%Y-%m-%dT%H:%M}")
    expect(page.locator("input[name=to]")).to_have_value(f"{end:%Y-%m-%dT%H:%M}")

    # Changing "from" in the picker keeps the URL the only state: the new range is in the address bar.
    page.fill("input[name=from]", f"{start - timedelta(days=1):%Y-%m-%dT%H:%M}")
    page.click("[data-form=time-range] button[type=submit]")
    page.wait_for_selector("body[data-charts-ready=true]")
    assert f"from={start - timedelta(days=1):%Y-%m-%dT%H}%3A" in page.url
    assert page.evaluate(f"({X_RANGE})('chart-metrics')")[0] == f"{start - timedelta(days=1):%Y-%m-%d %H:%M:%S}"

    # A range that makes no sense is refused in words, and the page still shows the last 30 days.
    response = page.goto(f"{live_server.url}/d/tumour/?from={end:%Y-%m-%dT%H:%M}&to={start:%Y-%m-%dT%H:%M}")
    assert response.status == 400
    expect(page.locator("[data-range-error]")).to_contain_text("'from' must be before 'to'.")


def test_zooming_one_chart_zooms_every_chart_on_the_page(browser, live_server, approver, deployment_with_history):
    _drift_checks(deployment_with_history, 2)
    page = _log_in(browser, live_server, "alice")
    _deployment_page(page, live_server, "?days=30")
    charts = ["chart-metrics", "chart-latency", "chart-drift"]
    assert len({tuple(page.evaluate(f"({X_RANGE})('{c}')")) for c in charts}) == 1  # one range to begin with

    window = ["2026-01-02 00:00:00", "2026-01-05 12:00:00"]
    page.evaluate("w => Plotly.relayout(document.getElementById('chart-latency'), {'xaxis.range': w})", window)

    for chart in charts:
        page.wait_for_function(f"w => ({X_RANGE})('{chart}').join() === w.join()", arg=window)
    # A drag-zoom's event carries the two ends separately; the others follow that too.
    page.evaluate("() => Plotly.relayout(document.getElementById('chart-drift'), "
                  "{'xaxis.range[0]': '2026-01-03 00:00:00', 'xaxis.range[1]': '2026-01-04 00:00:00'})")
    page.wait_for_function(f"() => ({X_RANGE})('chart-metrics')[0].startsWith('2026-01-03')")


def test_clicking_a_point_on_the_drift_chart_opens_that_report(browser, live_server, approver, deployment_with_history):
    older, newer = _drift_checks(deployment_with_history, 2)
    page = _log_in(browser, live_server, "alice")
    _deployment_page(page, live_server, "?days=1")

    points = page.locator("[data-chart=drift] .scatterlayer .point")
    expect(points).to_have_count(2)
    box = points.nth(0).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    page.wait_for_url(f"{live_server.url}/d/tumour/drift/{older.pk}/")
    page.locator("[data-nav=next]").click()
    page.wait_for_url(f"{live_server.url}/d/tumour/drift/{newer.pk}/")
    expect(page.locator("[data-nav=next]")).to_have_attribute("aria-disabled", "true")
