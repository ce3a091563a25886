"""A worker SIGKILLed mid-delivery: the receiver holds the request open, the worker process is killed with -9,
another worker starts, and the sweep hands the notification out again. The receiver sees it once, or twice with
the same webhook-id; never zero times. Real worker processes, the real Redis broker, a real HTTP receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from monitoring import background, services
from monitoring.models import Alert, AlertGroup, DeliveryAttempt, Notification
from tests.builders import ROOT, worker_env
from tests.conftest import wait_for
from workers.notifications.delivery import sweep
from workers.tasks import deliver_notification_task

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Its own queue: the session's worker (tests/conftest.py) must not take these deliveries.
QUEUE = "sigkill-test"
LEASE_S = 3


class HoldingReceiver:
    """Records every POST as it arrives; holds the first one open until released (the worker is then mid-send)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.ids.append(self.headers["webhook-id"])
                if len(receiver.ids) == 1:
                    receiver.first_arrived.set()
                    receiver.release.wait(timeout=60)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender died meanwhile
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def _start_worker(base, name: str) -> subprocess.Popen[bytes]:
    env = worker_env(base, ALERT_DELIVERY_LEASE_SECONDS=str(LEASE_S), DEBUG="true")
    log = open(base / f"{name}.log", "w")
    # Its own session: kill -9 goes to the worker and its pool child at once, as when a machine dies.
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--loglevel=INFO", f"--queues={QUEUE}",
         "-n", f"{name}@%h", "--concurrency=1", "--pool=prefork", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def _ready(name: str) -> bool:
    from dashboard.celery import app

    return bool(app.control.ping(timeout=1.0, destination=[f"{name}@{os.uname().nodename}"]))


@pytest.fixture
def receiver() -> Iterator[HoldingReceiver]:
    r = HoldingReceiver()
    yield r
    r.release.set()
    r.server.shutdown()


def test_a_worker_killed_mid_delivery_loses_nothing_and_the_resend_keeps_its_webhook_id(
    deployment, approver, settings, receiver, tmp_path, monkeypatch,
):
    settings.ALERT_ALLOW_PRIVATE_URLS = True
    # This process queues nothing on the default queue (where the session's worker listens); the test sends the
    # delivery tasks to its own workers' queue below.
    monkeypatch.setattr(background, "enqueue", lambda *args, **kwargs: None)
    channel, _ = services.channel_create(team=deployment.team, kind="webhook", name="hook", target=receiver.url,
                                         by=approver)
    services.routing_rule_create(team=deployment.team, name="all", channels=[channel], min_severity="info",
                                 group_wait_s=0, by=approver)
    services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="d", title="Data drift: f1")
    notification_ids = services.alert_group_flush(group_id=AlertGroup.objects.get().pk, now=timezone.now())
    assert len(notification_ids) == 1
    notification = Notification.objects.get()

    first = _start_worker(tmp_path, "doomed")
    second = None
    try:
        wait_for(lambda: _ready("doomed"), timeout=60)
        deliver_notification_task.apply_async((notification.pk,), queue=QUEUE)
        assert receiver.first_arrived.wait(timeout=60)  # the worker is inside the POST, the receiver holds it
        assert Notification.objects.get().status == "sending"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        receiver.release.set()

        second = _start_worker(tmp_path, "survivor")
        wait_for(lambda: _ready("survivor"), timeout=60)

        def resent() -> bool:
            # The beat's sweep, run here: once the dead worker's lease has run out it puts the row back.
            for due in sweep().due:
                deliver_notification_task.apply_async((due,), queue=QUEUE)
            return Notification.objects.get().status == "sent"

        wait_for(resent, timeout=60, interval=1.0)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)

    notification.refresh_from_db()
    assert receiver.ids in ([notification.webhook_id], [notification.webhook_id] * 2)
    assert len(receiver.ids) == 2  # here the killed send had reached the receiver: the resend is the second copy
    assert notification.attempts == 2  # the killed claim counted, and the resend
    assert list(notification.delivery_attempts.values_list("outcome", flat=True)) == [DeliveryAttempt.Outcome.SENT]
