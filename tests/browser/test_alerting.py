"""A team sets up alerting in a real browser: adds a webhook channel, sends a test, and sees the attempt listed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitoring.models import Notification, NotificationChannel
from tests.browser.test_approval import CHROMIUM, _log_in, browser, expect  # noqa: F401  (the browser fixture)
from tests.conftest import wait_for
from tests.receivers import HttpReceiver, start_http_receiver
from workers.notifications import delivery

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = start_http_receiver()
    yield r
    r.server.shutdown()


def test_an_approver_adds_a_webhook_sends_a_test_and_sees_the_attempt(browser, live_server, approver, team, receiver, settings):
    settings.ALERT_ALLOW_PRIVATE_URLS = True
    page = _log_in(browser, live_server, approver.username)
    page.goto(f"{live_server.url}/alerts")
    page.click("a[data-link=team-alerting]")
    expect(page.locator("[data-notice=in-app-only]")).to_be_visible()

    form = page.locator("form[data-form=channel-create]")
    form.locator("select[name=kind]").select_option("webhook")
    form.locator("input[name=name]").fill("Ops receiver")
    form.locator("input[name=target]").fill(receiver.url)
    form.locator("button[type=submit]").click()
    secret = page.locator("[data-secret]").inner_text()
    assert secret.startswith("whsec_")

    page.click("text=Continue to the channel")
    page.click("[data-action=send-test]")
    # The test's task went to the broker; deliver here what is due (a worker, if one runs, may take it first: the
    # claim makes it once either way).
    delivery.deliver_due()
    wait_for(lambda: Notification.objects.filter(status="sent").exists())
    page.reload()
    expect(page.locator("[data-attempt=sent]")).to_have_count(1)
    assert len(receiver.received) == 1 and receiver.received[0].json()["type"] == "test"
    assert NotificationChannel.objects.get().name == "Ops receiver"
