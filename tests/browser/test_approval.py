"""The dashboard in a real browser: Debian's chromium driven by Playwright against pytest-django's live server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

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
    candidate_row.locator("a[data-action=approve]").click()
    # A native <dialog> asks for the reason; an empty one is not sent (the field is required).
    dialog = page.locator("dialog[data-decision=approve][open]")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Approve v2 of Tumour classifier?")
    dialog.locator("[data-confirm=approve]").click()
    expect(dialog).to_be_visible()
    assert AuditEvent.objects.filter(action="version.approve").count() == 0
    dialog.locator("textarea[name=comment]").fill("Same accuracy, better calibrated")
    dialog.locator("[data-confirm=approve]").click()

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


def test_an_approver_rolls_back_from_a_dialog_that_names_the_version_it_restores(browser, live_server, approver, deployment_with_history):
    candidate = deployment_with_history.versions.get(number=2)
    services.version_approve(version=candidate, by=approver, comment="Same accuracy, better calibrated")
    page = _log_in(browser, live_server, "alice", timezone_id="Europe/Berlin")
    page.goto(f"{live_server.url}/d/tumour/")

    button = page.locator("#versions a[data-action=rollback]")
    expect(button).to_have_text("Roll back to v1")
    button.click()
    dialog = page.locator("dialog[data-decision=rollback][open]")
    expect(dialog.locator("h2")).to_have_text("Roll Tumour classifier back to v1?")
    dialog.locator("[data-dialog-close]").click()  # cancel: nothing happens
    expect(dialog).to_be_hidden()
    assert deployment_with_history.active_version().number == 2

    button.click()
    dialog.locator("textarea[name=comment]").fill("p95 latency doubled")
    dialog.locator("[data-confirm=rollback]").click()

    expect(page.locator(".message-success")).to_have_text("Rolled back: v1 is serving again.")
    expect(page.locator("tr[data-version='1']")).to_have_attribute("data-status", "active")
    event = AuditEvent.objects.get(action="deployment.rollback")
    assert (event.comment, event.before, event.after) == ("p95 latency doubled", {"active_version": 2}, {"active_version": 1})
    page.goto(f"{live_server.url}/d/tumour/audit")
    expect(page.locator("tr[data-action='deployment.rollback'] [data-object]")).to_have_text("v1 of Tumour classifier")

    # The retired version says why it left: the rollback's reason, not its approval comment.
    page.goto(f"{live_server.url}/d/tumour/versions/2/")
    expect(page.locator("[data-retired-reason]")).to_have_text("rolled back to v1: p95 latency doubled")


def test_the_version_page_shows_its_lineage_history_in_the_viewers_zone_and_its_file(browser, live_server, approver, viewer, deployment_with_history):
    candidate = deployment_with_history.versions.get(number=2)
    services.version_approve(version=candidate, by=approver, comment="Same accuracy, better calibrated")
    page = _log_in(browser, live_server, "vera", timezone_id="America/New_York")
    page.goto(f"{live_server.url}/d/tumour/")
    page.locator("tr[data-version='2'] a[data-link=version]").click()

    expect(page).to_have_url(f"{live_server.url}/d/tumour/versions/2/")
    expect(page.locator("h1")).to_contain_text("v2 of Tumour classifier")
    history = page.locator("[data-table=history]")
    expect(history).to_contain_text("Approved")
    expect(history).to_contain_text("Same accuracy, better calibrated")
    approved_at = candidate.__class__.objects.get(pk=candidate.pk).decided_at
    expect(history).to_contain_text(timezone.localtime(approved_at, ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M"))
    expect(page.locator("[data-sha256]")).to_have_text(candidate.sha256)
    # It served for a moment: its page draws what it scored since (here: nothing yet, and says so).
    expect(page.locator("[data-list=periods]")).to_contain_text("serving now")

    with page.expect_download() as download:
        page.locator("a[data-download=model]").click()
    assert download.value.suggested_filename == "tumour-v2.onnx"
    assert hashlib.sha256(Path(download.value.path()).read_bytes()).hexdigest() == candidate.sha256

    page.goto(f"{live_server.url}/d/tumour/versions/1/")
    expect(page.locator("[data-retired-reason]")).to_have_text("replaced by v2")
