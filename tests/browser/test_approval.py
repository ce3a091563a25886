"""The dashboard in a real browser: Debian's chromium driven by Playwright against pytest-django's live server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from monitoring import services
from monitoring.metrics import classification_metrics
from monitoring.models import AuditEvent, Deployment, EvaluationRun, MaintenanceJob, ModelVersion
from monitoring.runtime import ModelRunner, measure_latency
from tests.conftest import breast_cancer_split, trained_model

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

# Playwright's sync API runs an event loop in this thread; the ORM calls made here while it runs are
# ordinary blocking calls, so Django's "async context" guard would misfire.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

PASSWORD = "correct-horse-battery"  # the conftest users' password


@pytest.fixture
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def _log_in(browser, live_server, username: str, *, timezone_id: str = "UTC"):
    page = browser.new_context(timezone_id=timezone_id, viewport={"width": 1400, "height": 900}).new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


def _runner(version: ModelVersion) -> ModelRunner:
    return ModelRunner(
        services.blob_read(version.sha256),
        label_output=version.label_output,
        probability_output=version.probability_output,
        class_labels=version.class_labels,
    )


def _evaluate(version: ModelVersion, X: np.ndarray, y: np.ndarray, *, source: str, at) -> EvaluationRun:
    """A real evaluation: the stored ONNX file scored by onnxruntime, recorded through the service."""
    runner = _runner(version)
    predictions = runner.predict(X)
    metrics = classification_metrics(
        y.astype(str), predictions.labels, labels=version.deployment.class_labels, probabilities=predictions.probabilities
    ).as_dict()
    latency = measure_latency(runner, X, calls=50)
    metrics |= {"latency_p50_ms": latency.p50_ms, "latency_p95_ms": latency.p95_ms, "latency_p99_ms": latency.p99_ms}
    run = EvaluationRun.objects.create(
        deployment=version.deployment, version=version, source=source, measured_at=at, n_rows=len(X),
        dataset=version.deployment.evaluation_dataset if source == EvaluationRun.Source.EVALUATION_SET else None,
    )
    return services.evaluation_complete(run=run, metrics=metrics)


@pytest.fixture
def deployment_with_history(deployment: Deployment, operator) -> Deployment:
    """Two weeks of daily evaluations of v1 (production windows are bootstrap samples), and a scored candidate v2."""
    _, _, X_test, y_test = breast_cancer_split()
    active = deployment.active_version()
    rng = np.random.default_rng(7)
    now = timezone.now()
    for days_ago in range(14, 0, -1):
        at = now - timedelta(days=days_ago)
        rows = rng.choice(len(X_test), size=150)
        _evaluate(active, X_test[rows], y_test[rows], source=EvaluationRun.Source.PRODUCTION, at=at)
        _evaluate(active, X_test, y_test, source=EvaluationRun.Source.EVALUATION_SET, at=at)
    onnx_bytes, recipe = trained_model(C=0.05)
    candidate = services.version_register(deployment=deployment, data=onnx_bytes, recipe=recipe, by=operator)
    _evaluate(candidate, X_test, y_test, source=EvaluationRun.Source.EVALUATION_SET, at=now - timedelta(hours=1))
    return deployment


def test_an_approver_reviews_the_charts_and_approves_a_candidate(browser, live_server, approver, deployment_with_history):
    page = _log_in(browser, live_server, "alice", timezone_id="Asia/Tokyo")
    page.goto(f"{live_server.url}/d/tumour/")

    # Plotly drew the server-built figures into their divs.
    expect(page.locator("[data-chart=metrics].js-plotly-plot .main-svg").first).to_be_visible()
    expect(page.locator("[data-chart=latency].js-plotly-plot .main-svg").first).to_be_visible()
    assert page.locator("[data-chart=metrics] .scatterlayer .trace").count() >= 2
    # The login page set the tz cookie, so this page is rendered in the browser's zone.
    expect(page.locator("[data-timezone]")).to_have_text("Asia/Tokyo")

    candidate_row = page.locator("tr[data-version='2']")
    expect(candidate_row).to_have_attribute("data-status", "candidate")
    candidate_row.locator("input[name=comment]").fill("Same accuracy, better calibrated")
    candidate_row.locator("[data-action=approve]").click()

    expect(page.locator(".message-success")).to_have_text("v2 is now the active version.")
    expect(page.locator("tr[data-version='2']")).to_have_attribute("data-status", "active")
    expect(page.locator("tr[data-version='1']")).to_have_attribute("data-status", "retired")
    expect(page.locator("[data-active-version]")).to_have_text("v2")
    event = AuditEvent.objects.get(action="version.approve")
    assert (event.actor, event.comment, event.after["active_version"]) == (approver, "Same accuracy, better calibrated", 2)

    page.goto(f"{live_server.url}/d/tumour/audit")
    expect(page.locator("tr[data-action='version.approve']")).to_contain_text("Same accuracy, better calibrated")


def test_a_running_jobs_progress_bar_follows_the_job_without_a_reload(browser, live_server, viewer, deployment):
    job = MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.active_version(), kind=MaintenanceJob.Kind.COMPRESS_INT8,
        status=MaintenanceJob.Status.RUNNING, progress=10, progress_message="Loading model",
    )
    page = _log_in(browser, live_server, "vera")
    page.goto(f"{live_server.url}/d/tumour/#jobs")
    row = page.locator(f"tr[data-job-id='{job.pk}']")
    expect(row.locator("[data-job-field=message]")).to_have_text("10% · Loading model")

    # What a worker would write; the page polls /jobs/<id>/progress every 2 s.
    MaintenanceJob.objects.filter(pk=job.pk).update(progress=70, progress_message="Quantizing")
    expect(row.locator("[data-job-field=message]")).to_have_text("70% · Quantizing", timeout=10_000)
    expect(row.locator("[data-job-field=bar]")).to_have_attribute("style", "width: 70%;")

    MaintenanceJob.objects.filter(pk=job.pk).update(
        status=MaintenanceJob.Status.FAILED, progress=70, error="quantizer refused the graph"
    )
    expect(row.locator("[data-job-field=status]")).to_have_text("Failed", timeout=10_000)
    expect(row.locator("[data-job-field=result]")).to_have_text("quantizer refused the graph")
    expect(page.locator("[data-jobs-done]")).to_be_visible()
