"""Redis down for a minute (the broker and the cache) while traffic arrives, with beat and a worker running and
connected when it goes: ingestion answers and stores every batch (the enqueue after commit fails, is logged, and
the request succeeds), a login is answered, and once Redis is back the worker and beat reconnect by themselves
and the sweeps catch up: the pending upload is indexed, the evaluation and drift check that fell due during the
outage run, and the alert raised meanwhile is delivered, exactly once.

Redis is killed and restarted empty (`--save ''`): whatever was queued is gone, and nothing needs it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import kombu.exceptions
import pytest
import redis
import redis.exceptions
import urllib3

from tests.faults.conftest import post_batch, rows, seed, stored
from tests.faults.stack import Stack

pytestmark = pytest.mark.faults

PENDING_ROWS = 10_001  # one past INDEX_IN_REQUEST_UP_TO: stored now, indexed by the indexer


class Hook:
    """The webhook receiver of the seeded channel: records each delivery's webhook-id."""

    def __init__(self, port: int) -> None:
        self.ids: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.ids.append(self.headers["webhook-id"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook(stack: Stack) -> Iterator[Hook]:
    h = Hook(stack.hook_port)
    yield h
    h.server.shutdown()
    h.server.server_close()


def _csv(n: int, prefix: str) -> bytes:
    lines = ["id,timestamp,predicted_label,a,b,c"]
    lines += [f"{prefix}-{i},2026-01-01T00:00:00Z,{'yes' if i % 2 else 'no'},{i * 0.001},1.0,-1.0" for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


RAISE_ALERT = """
import json
from monitoring import services
from monitoring.models import Alert, Deployment
alert, created = services.alert_raise(deployment=Deployment.objects.get(slug="redis-down"), kind=Alert.Kind.DATA_DRIFT,
                                      dedup_key="faults:redis-down", title="Data drift: a", severity="critical")
print(json.dumps({"alert": alert.pk, "created": created}))
"""


OUTAGE_S = 60.0
# A client's patience per request: an enqueue that waited on the dead broker (connect timeouts, retries) would
# show as a timeout here; the settings bound it at a few seconds (REDIS_TIMEOUT_SECONDS).
ANSWER_WITHIN_S = 15.0


def _login_attempt(web: str) -> int:
    """A failed login (unknown password): its failure count lives in the Redis cache (django-axes)."""
    page = urllib3.request("GET", f"{web}/login/", retries=False, timeout=ANSWER_WITHIN_S)
    cookie = page.headers["Set-Cookie"].split(";", 1)[0]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.data.decode())[1]
    form = urlencode({"csrfmiddlewaretoken": token, "username": "fiona", "password": "not-her-password"})
    answer = urllib3.request("POST", f"{web}/login/", body=form, retries=False, timeout=ANSWER_WITHIN_S,
                             headers={"Cookie": cookie, "Referer": f"{web}/login/",
                                      "Content-Type": "application/x-www-form-urlencoded"})
    return answer.status


def _checks(stack: Stack) -> tuple[int, int]:
    """(succeeded evaluation runs, drift reports) of the two deployments with a model, in the private database."""
    evaluate, drift = stack.seeded_models["kill-evaluate"], stack.seeded_models["kill-drift"]
    runs = stack.sql("SELECT count(*) FROM monitoring_evaluationrun WHERE deployment_id = %s AND status = 'succeeded'",
                     evaluate)[0][0]
    reports = stack.sql("SELECT count(*) FROM monitoring_driftreport WHERE deployment_id = %s", drift)[0][0]
    return int(runs), int(reports)


def _interval_passed(stack: Stack) -> None:
    """The checks' intervals (60 and 30 min) run out during the outage: their last outcomes move two hours back."""
    ids = [stack.seeded_models["kill-evaluate"], stack.seeded_models["kill-drift"]]
    stack.sql("UPDATE monitoring_scheduledcheckstate SET last_succeeded_at = last_succeeded_at - interval '2 hours', "
              "last_failed_at = last_failed_at - interval '2 hours' WHERE deployment_id = ANY(%s) RETURNING id", ids)
    stack.sql("UPDATE monitoring_driftreport SET created_at = created_at - interval '2 hours' "
              "WHERE deployment_id = ANY(%s) RETURNING id", ids)


def _worker_idle(stack: Stack) -> bool:
    """Nothing queued and nothing running: the tests after this one expect a quiet worker."""
    try:
        active = stack._celery().control.inspect(timeout=2.0).active() or {}
        return bool(active) and not any(active.values()) and _queue_depth(stack) == 0
    except (OSError, redis.exceptions.RedisError, kombu.exceptions.OperationalError):
        return False  # a broadcast's connection can be dropped while the worker is busy: ask again


def _queue_depth(stack: Stack) -> int:
    return int(redis.Redis.from_url(stack.redis.url).llen("default"))


def test_with_redis_down_a_minute_ingestion_answers_and_indexing_checks_and_alerts_catch_up_when_it_returns(
    stack, web, hook
):
    seeded = seed(stack, "redis-down")
    stack.start_beat()
    try:
        # Beat's first sweep evaluates and checks both model deployments (never checked: due): beat and the
        # worker are connected and working when Redis goes.
        _wait(lambda: _checks(stack) >= (1, 1), 240, "the first sweep's evaluation and drift check")
        _catch_up_after_an_outage(stack, web, hook, seeded)
    finally:
        stack.stop_process("beat")
    _wait(lambda: _worker_idle(stack), 120, "the worker idle after beat stopped")


def _catch_up_after_an_outage(stack, web, hook, seeded) -> None:
    checks_before = _checks(stack)
    stack.redis.stop()
    down_at = time.monotonic()
    try:
        small = post_batch(web, seeded, rows(20, prefix="small"))
        assert small.status == 201, small.data  # indexed in the request: nothing needed Redis
        upload = urllib3.request(
            "POST", f"{web}/api/v1/deployments/{seeded.slug}/predictions/upload", body=_csv(PENDING_ROWS, "big"),
            headers={"Authorization": f"Bearer {seeded.token}", "Content-Type": "text/csv"}, retries=False,
            timeout=urllib3.Timeout(connect=5, read=ANSWER_WITHIN_S),
        )
        assert upload.status == 202, upload.data  # stored; its indexer could not be queued
        batch_id = upload.json()["batch_id"]
        assert _login_attempt(web) == 200  # the form again, with its error: not a 500
        # An alert raised by another process meanwhile (as a drift check would): its delivery cannot be queued.
        raised = stack.django(RAISE_ALERT)
        assert raised["created"]
        _interval_passed(stack)
        assert stack.sql("SELECT state FROM monitoring_predictionbatch WHERE id = %s", batch_id) == [("pending",)]
        assert stack.sql("SELECT count(*) FROM monitoring_notification")[0][0] == 0
        assert hook.ids == []
        # Until the minute is up: beat's sweeps (every 15 s and every CHECK_SWEEP_SECONDS) fall inside the outage.
        while time.monotonic() - down_at < OUTAGE_S:
            assert post_batch(web, seeded, rows(5, prefix=f"during-{int(time.monotonic())}")).status == 201
            time.sleep(5)
        assert _checks(stack) == checks_before  # nothing ran while the broker was away
    finally:
        stack.redis.start()
    during = sum(int(n) for (n,) in stack.sql(
        "SELECT n_rows FROM monitoring_predictionbatch WHERE deployment_id = %s AND id <> %s",
        seeded.deployment_id, batch_id))

    # The beat's sweeps find what the lost messages were for.
    _wait(lambda: stack.sql("SELECT state FROM monitoring_predictionbatch WHERE id = %s", batch_id) == [("indexed",)],
          120, "the pending upload indexed")
    _wait(lambda: len(hook.ids) >= 1, 120, "the alert's webhook delivered")
    def both_ran() -> tuple[int, int] | None:
        now = _checks(stack)
        return now if now[0] > checks_before[0] and now[1] > checks_before[1] else None

    caught_up = _wait(both_ran, 180, "the evaluation and the drift check that fell due during the outage")
    assert caught_up == (checks_before[0] + 1, checks_before[1] + 1)  # each once
    assert stored(stack, seeded) == (during + PENDING_ROWS,) * 3
    time.sleep(16)  # one more sweep period: a second delivery, evaluation or drift check would show now
    assert _checks(stack) == caught_up
    (webhook_id,) = stack.sql("SELECT webhook_id FROM monitoring_notification n JOIN monitoring_alertgroup g "
                              "ON g.id = n.group_id WHERE g.deployment_id = %s", seeded.deployment_id)[0]
    assert hook.ids == [str(webhook_id)]
    assert "could not" in stack.log("web").lower() or "error" in stack.log("web").lower()  # the failure was logged
    assert "a failed login was not counted" in stack.log("web")


def test_with_redis_hung_requests_answer_within_the_clients_timeouts_and_the_work_is_done_after(stack, web):
    """Redis stopped (SIGSTOP), not gone: connections open, nothing answers. The web's Redis clients give up after
    REDIS_TIMEOUT_SECONDS instead of holding the request until gunicorn kills its worker."""
    seeded = seed(stack, "redis-down")
    before = stored(stack, seeded)[0]
    stack.redis.pause()
    try:
        upload = urllib3.request(
            "POST", f"{web}/api/v1/deployments/{seeded.slug}/predictions/upload", body=_csv(PENDING_ROWS, "hung"),
            headers={"Authorization": f"Bearer {seeded.token}", "Content-Type": "text/csv"}, retries=False,
            timeout=urllib3.Timeout(connect=5, read=ANSWER_WITHIN_S),
        )
        assert upload.status == 202, upload.data  # stored; setting its indexer's pending flag timed out
        assert _login_attempt(web) == 200
    finally:
        stack.redis.resume()
    assert stored(stack, seeded)[0] == before + PENDING_ROWS
    assert "timeout" in stack.log("web").lower()  # the clients timed out, and said so
