"""A canary in a real browser: an approver rolls a candidate out, watches the guards pass and the stage advance,
pauses it and aborts it; the history says how it ended."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from monitoring import services
from tests.browser.test_approval import CHROMIUM, _log_in, browser, expect  # noqa: F401  (browser: a fixture)
from tests.conftest import FEATURES, trained_model
from tests.dashboard.api.helpers import bearer, post_json
from workers.rollout import check_rollouts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
STAGES = [{"share": 0.1, "min_minutes": 0, "min_predictions": 100},
          {"share": 0.5, "min_minutes": 0, "min_predictions": 100}, {"share": 1.0}]
GUARDS = {name: {"min_rows": 100} for name in ("class_shift", "score_shift", "estimated_accuracy")}


def _log(token: str, version: int, prefix: str) -> None:
    now = timezone.now().isoformat()
    rows = [{"id": f"{prefix}-{i}", "timestamp": now, "features": dict.fromkeys(FEATURES, 1.0),
             "predicted_label": str(i % 2)} for i in range(200)]
    response = post_json(Client(), "/api/v1/deployments/tumour/predictions", {"predictions": rows, "version": version},
                         **bearer(token))
    assert response.status_code in (200, 201, 202), response.content


def test_an_approver_watches_a_canary_advance_then_pauses_and_aborts_it(browser, live_server, deployment, operator,
                                                                         approver):
    services.rollout_plan_set(deployment=deployment, by=approver, stages=STAGES, guards=GUARDS)
    services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)
    token = services.token_create(deployment=deployment, name="fleet", by=operator)[1]
    page = _log_in(browser, live_server, "alice")
    page.goto(f"{live_server.url}/d/tumour/")
    expect(page.locator("[data-empty=rollout]")).to_contain_text("10 % → 50 % → 100 %")

    page.locator("tr[data-version='2'] [data-action=rollout-start]").click()
    dialog = page.locator("dialog[data-decision=rollout-start][open]")  # a reason, as for every approval
    dialog.locator("textarea[name=comment]").fill("Canary on a tenth of the fleet first")
    dialog.locator("[data-confirm=rollout-start]").click()
    expect(page.locator(".message-success")).to_contain_text("v2 is rolling out by the deployment's plan")
    expect(page.locator("[data-rollout-share]")).to_have_text("10 %")
    card = page.locator("#rollout [data-rollout]")
    expect(card).to_have_attribute("data-stage", "1")
    expect(page.locator("[data-rollout-share]")).to_have_text("10 %")

    _log(token, 2, "canary")  # the fleet's traffic in the stage, both versions alike
    _log(token, 1, "stable")
    check_rollouts(now=timezone.now())  # what the beat's guard check runs
    page.reload()
    expect(card).to_have_attribute("data-stage", "2")
    expect(page.locator("[data-rollout-share]")).to_have_text("50 %")
    expect(page.locator("[data-chart=rollout-guards].js-plotly-plot .main-svg").first).to_be_visible()

    page.locator("[data-action=rollout-pause]").click()
    expect(page.locator("#rollout [data-rollout]")).to_have_attribute("data-state", "paused")
    page.locator("#rollout input[name=comment]").fill("not before the weekend")
    page.locator("[data-action=rollout-abort]").click()
    expect(page.locator(".message-success")).to_contain_text("every instance is back on the active version")
    expect(page.locator("[data-table=rollout-history] tr[data-state=aborted]")).to_contain_text(
        "aborted by alice: not before the weekend")
