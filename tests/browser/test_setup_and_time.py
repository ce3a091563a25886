"""In a real browser: setting a deployment up from nothing, and times shown in the viewer's own zone."""

from __future__ import annotations

import io
import zoneinfo
from datetime import UTC, datetime

import numpy as np
import pytest

from monitoring import services
from monitoring.models import Alert, AuditEvent, Deployment, ModelVersion
from tests.browser.test_approval import PASSWORD, browser, sync_api  # noqa: F401
from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
expect = sync_api.expect


def _log_in(browser, live_server, username: str, *, timezone_id: str = "UTC"):
    page = browser.new_context(timezone_id=timezone_id, viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


def _csv(X: np.ndarray, y: np.ndarray | None) -> bytes:
    out = io.StringIO()
    out.write(",".join(FEATURES + (["label"] if y is not None else [])) + "\n")
    for i, row in enumerate(X):
        out.write(",".join(f"{v:.6g}" for v in row) + (f",{y[i]}" if y is not None else "") + "\n")
    return out.getvalue().encode()


def test_an_operator_sets_up_a_deployment_from_nothing_in_the_browser(browser, live_server, operator, team):
    page = _log_in(browser, live_server, "oscar")
    expect(page.locator("[data-empty=deployments]")).to_be_visible()

    page.locator("[data-empty=deployments] a", has_text="Create a deployment").click()
    page.fill("input[name=name]", "Tumour screening")
    page.set_input_files("input[name=file]", {"name": "model.onnx", "mimeType": "application/octet-stream",
                                              "buffer": trained_model()[0]})
    page.click("[data-form=deployment-new] button[type=submit]")

    page.wait_for_url(f"{live_server.url}/d/tumour-screening/")
    expect(page.locator(".message-success")).to_contain_text("created with v1 serving: 30 features, classes 0, 1")
    deployment = Deployment.objects.get(slug="tumour-screening")
    assert deployment.feature_names == FEATURES and deployment.class_labels == CLASSES
    assert deployment.versions.get().status == ModelVersion.Status.ACTIVE

    # The empty states lead to each dataset's upload, with its kind chosen.
    X_train, _, X_test, y_test = breast_cancer_split()
    page.locator("[data-next=upload-evaluation]").click()
    expect(page.locator("select[name=kind]")).to_have_value("evaluation")
    page.set_input_files("input[name=file]", {"name": "holdout.csv", "mimeType": "text/csv", "buffer": _csv(X_test, y_test)})
    page.click("[data-form=dataset-new] button[type=submit]")
    expect(page.locator(".message-success")).to_have_text("holdout.csv (219 rows) is now the evaluation (labelled) dataset.")

    page.locator("[data-next=upload-reference]").click()
    expect(page.locator("select[name=kind]")).to_have_value("reference")
    page.set_input_files("input[name=file]", {"name": "train.csv", "mimeType": "text/csv", "buffer": _csv(X_train, None)})
    page.click("[data-form=dataset-new] button[type=submit]")
    expect(page.locator(".message-success")).to_have_text("train.csv (350 rows) is now the reference dataset.")

    deployment.refresh_from_db()
    assert (deployment.evaluation_dataset.n_rows, deployment.reference_dataset.n_rows) == (219, 350)
    assert page.locator("[data-next]").count() == 0  # nothing left to upload


def test_a_bad_dataset_is_refused_on_the_page_and_nothing_is_stored(browser, live_server, operator, deployment):
    page = _log_in(browser, live_server, "oscar")
    page.goto(f"{live_server.url}/d/tumour/datasets/new?kind=evaluation")
    before = (deployment.evaluation_dataset_id, AuditEvent.objects.count())

    page.set_input_files("input[name=file]", {"name": "bad.csv", "mimeType": "text/csv", "buffer": b"f0,f1,label\n1,2,0\n"})
    page.click("[data-form=dataset-new] button[type=submit]")

    expect(page.locator("[data-upload-errors]")).to_contain_text("f2")  # names the first missing column
    deployment.refresh_from_db()
    assert (deployment.evaluation_dataset_id, AuditEvent.objects.count()) == before


SEEN_AT = datetime(2026, 7, 1, 16, 30, tzinfo=UTC)  # 12:30 EDT in New York, 01:30 the next day in Tokyo


@pytest.mark.parametrize(("zone", "shown", "abbreviation"), [
    ("America/New_York", "Jul 1, 12:30", "EDT"),
    ("Asia/Tokyo", "Jul 2, 01:30", "JST"),
])
def test_times_are_shown_in_the_browsers_zone_and_say_which(browser, live_server, approver, deployment, zone, shown,
                                                            abbreviation):
    alert, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="Drift")
    Alert.objects.filter(pk=alert.pk).update(created_at=SEEN_AT, last_seen_at=SEEN_AT)  # first and last seen
    page = _log_in(browser, live_server, "alice", timezone_id=zone)

    page.goto(f"{live_server.url}/alerts")
    cell = page.locator("tr", has_text="Drift").locator("td span[title]").first
    expect(cell).to_have_text(shown)
    expect(cell).to_have_attribute("title", f"{SEEN_AT.astimezone(zoneinfo.ZoneInfo(zone)):%Y-%m-%d %H:%M:%S} {abbreviation}")
    expect(page.locator("[data-timezone]")).to_have_text(zone)

    # The audit log agrees with the alert list: the deployment's creation, in the same zone.
    created = AuditEvent.objects.get(action="deployment.create").at.astimezone(zoneinfo.ZoneInfo(zone))
    page.goto(f"{live_server.url}/d/tumour/audit")
    expect(page.locator("tr[data-action='deployment.create'] td").first).to_have_text(f"{created:%Y-%m-%d %H:%M:%S}")
