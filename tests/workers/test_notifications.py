"""Alert transports: in-app is the row itself; a webhook POSTs JSON and classifies failures."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from monitoring import services
from monitoring.models import Alert
from workers.notifications import TRANSPORTS, InApp, TransportError, Webhook

pytestmark = pytest.mark.django_db


class _Receiver(BaseHTTPRequestHandler):
    status = 204
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    """A local HTTP server standing in for the webhook's receiver; yields its base URL and handler class."""
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 204})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def alert(deployment) -> Alert:
    alert, _ = services.alert_raise(
        deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift:data", title="Data drift in 3 features"
    )
    return alert


def test_the_registry_names_each_channel():
    assert TRANSPORTS == {"in_app": InApp, "webhook": Webhook}


def test_in_app_delivery_is_the_alert_row_itself(alert):
    InApp().notify(alert)

    assert Alert.objects.get(pk=alert.pk).title == "Data drift in 3 features"


def test_a_webhook_posts_the_alert_as_json(receiver, alert):
    url, handler = receiver

    Webhook(f"{url}/hooks/ml").notify(alert)

    [request] = handler.received
    assert request["path"] == "/hooks/ml" and request["type"] == "application/json"
    assert request["body"]["deployment"] == "tumour" and request["body"]["title"] == "Data drift in 3 features"
    assert request["body"]["kind"] == "data_drift" and request["body"]["status"] == "open"


@pytest.mark.parametrize(("status", "permanent"), [(404, True), (503, False)])
def test_a_refused_delivery_is_permanent_and_a_server_error_is_not(receiver, alert, status, permanent):
    url, handler = receiver
    handler.status = status

    with pytest.raises(TransportError) as caught:
        Webhook(url).notify(alert)

    assert caught.value.permanent is permanent and f"HTTP {status}" in caught.value.message


def test_an_unreachable_receiver_is_a_temporary_failure(receiver, alert):
    url, _ = receiver
    unreachable = url.rsplit(":", 1)[0] + ":1"  # port 1: nothing listens there

    with pytest.raises(TransportError) as caught:
        Webhook(unreachable).notify(alert)

    assert caught.value.permanent is False


def test_a_webhook_needs_an_http_url():
    with pytest.raises(TransportError) as caught:
        Webhook("file:///etc/passwd")

    assert caught.value.permanent is True
