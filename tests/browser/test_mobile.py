"""Every page on a 390 px phone: the header wraps, and nothing is wider than the screen (wide tables scroll
inside their card). Debian's chromium through Playwright, logged in, on a deployment with history."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from monitoring import services
from monitoring.models import Alert, Deployment, MaintenanceJob
from tests.browser.test_approval import PASSWORD, browser, deployment_with_history, sync_api  # noqa: F401
from tests.conftest import breast_cancer_split, trained_model
from tests.workers.conftest import ingest_traffic
from workers.drift_check import check_drift

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
expect = sync_api.expect

PHONE = {"width": 390, "height": 844}  # an iPhone 12-14's CSS viewport


def _phone(browser, live_server, username: str, *, timezone_id: str = "UTC"):
    context = browser.new_context(viewport=PHONE, timezone_id=timezone_id, is_mobile=True, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page, errors


@pytest.fixture
def seeded(deployment_with_history: Deployment, approver, operator) -> Deployment:
    """History and a candidate (deployment_with_history), plus a real drift report, an alert, a job and a token."""
    deployment = deployment_with_history
    _, _, X_test, _ = breast_cancer_split()
    now = timezone.now()
    ingest_traffic(deployment, X_test * 1.3, predicted=np.zeros(len(X_test), dtype=int),
                   start=now - timedelta(hours=3), spacing=timedelta(seconds=20))
    check_drift(deployment=deployment, window_start=now - timedelta(hours=4), window_end=now)
    services.alert_raise(deployment=deployment, kind=Alert.Kind.METRIC_BELOW_THRESHOLD, dedup_key="accuracy",
                         title="accuracy 0.812 is below 0.900 on labelled production traffic")
    MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.active_version(), kind=MaintenanceJob.Kind.COMPRESS_INT8,
        requested_by=operator, status=MaintenanceJob.Status.SUCCEEDED, progress=100, progress_message="Done",
    )
    services.token_create(deployment=deployment, name="a scoring service with a long descriptive name", by=operator)
    # A retrain's version: its page lists the job's settings, whose labels are long ("Hyperparameter search budget").
    retrain = MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.active_version(), kind=MaintenanceJob.Kind.RETRAIN,
        requested_by=operator, status=MaintenanceJob.Status.SUCCEEDED, progress=100,
    )
    made = services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=None, origin="retrain",
                                     parent=deployment.active_version(), job=retrain)
    MaintenanceJob.objects.filter(pk=retrain.pk).update(candidate=made)
    return deployment


def _page_urls(deployment: Deployment) -> dict[str, str]:
    slug = deployment.slug
    report = deployment.drift_reports.latest("window_end")
    candidate = deployment.versions.filter(status="candidate").earliest("number")
    retrained = deployment.versions.get(origin="retrain")
    return {
        "overview": "/",
        "deployment (with its job queue)": f"/d/{slug}/",
        "alerts": "/alerts?show=all",
        "audit": f"/d/{slug}/audit",
        "drift report": f"/d/{slug}/drift/{report.pk}/",
        "drift reports": f"/d/{slug}/drift/",
        "deployment, custom range": f"/d/{slug}/?from=2026-01-01T00:00&to=2026-01-08T00:00&refresh=5m",
        "compare": f"/d/{slug}/versions/{candidate.number}/compare",
        "version": f"/d/{slug}/versions/{candidate.number}/",
        "active version": f"/d/{slug}/versions/1/",
        "a retrain's version, with its job settings": f"/d/{slug}/versions/{retrained.number}/",
        "approve form (no JS)": f"/d/{slug}/versions/{candidate.number}/approve",
        "audit filtered": f"/d/{slug}/audit?kind=version",
        "version new": f"/d/{slug}/versions/new",
        "dataset new": f"/d/{slug}/datasets/new",
        "deployment new": "/deployments/new",
        "settings": f"/d/{slug}/settings",
        "tokens": f"/d/{slug}/send-data",
        "password": "/password/",
    }


def _overflow(page) -> dict:
    """How much wider than the viewport the page is, and the widest elements that stick out."""
    return page.evaluate("""() => {
        const width = window.innerWidth;
        const culprits = [];
        for (const el of document.body.querySelectorAll('*')) {
            const box = el.getBoundingClientRect();
            if (box.right > width + 1 && !el.closest('.card.flush, .code-block, .table-scroll, .js-plotly-plot')) {
                culprits.push((el.tagName + '.' + el.className).slice(0, 60) + ' → ' + Math.round(box.right));
            }
        }
        return {scroll: document.documentElement.scrollWidth, width: width, culprits: culprits.slice(0, 8)};
    }""")


def test_no_page_is_wider_than_a_390_px_phone(browser, live_server, approver, seeded):
    page, errors = _phone(browser, live_server, "alice")
    too_wide = {}
    for name, url in _page_urls(seeded).items():
        response = page.goto(live_server.url + url)
        assert response.status == 200, (name, response.status)
        page.wait_for_load_state("load")
        seen = _overflow(page)
        # A phone lays out a page wider than its screen at that width (zoomed out), and innerWidth follows:
        # so the screen's own width is the bound, not only innerWidth.
        if seen["scroll"] > seen["width"] or seen["width"] > PHONE["width"]:
            too_wide[name] = seen
    assert not too_wide, too_wide
    assert not errors, errors


def test_the_new_token_page_with_its_examples_fits_a_phone(browser, live_server, operator, seeded):
    page, _ = _phone(browser, live_server, "oscar")
    page.goto(f"{live_server.url}/d/{seeded.slug}/send-data")
    page.click("#tokens button[type=submit]")
    expect(page.locator("#token-plaintext")).to_be_visible()
    seen = _overflow(page)
    assert seen["scroll"] <= seen["width"] <= PHONE["width"], seen
    # The examples are there, and scroll inside their own box.
    assert page.locator("[data-snippet=curl]").inner_text().count("Authorization: Bearer") == 2


def test_the_header_wraps_on_a_phone_and_every_link_in_it_is_on_screen(browser, live_server, approver, seeded):
    page, _ = _phone(browser, live_server, "alice")
    page.goto(f"{live_server.url}/d/{seeded.slug}/")
    for selector in (".brand", ".nav a >> nth=-1", ".user form button"):
        box = page.locator(f".topbar {selector}").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (selector, box)
    assert page.evaluate("document.querySelector('.topbar').getBoundingClientRect().height") > 48  # wrapped


def test_a_wide_table_scrolls_inside_its_card(browser, live_server, approver, seeded):
    page, _ = _phone(browser, live_server, "alice")
    page.goto(f"{live_server.url}/d/{seeded.slug}/")
    table = page.locator("#versions table[data-table=versions]")
    scroll, client, overflow = table.evaluate("el => [el.scrollWidth, el.clientWidth, getComputedStyle(el).overflowX]")
    assert scroll > client and overflow == "auto", (scroll, client, overflow)
    # Scrolled sideways, the table moves and the page does not.
    table.evaluate("el => { el.scrollLeft = 10000; }")
    assert table.evaluate("el => el.scrollLeft") > 0
    assert page.evaluate("window.scrollX") == 0
