"""Alert delivery: 1,000 alerts across 100 deployments, routed to three channels (a Standard Webhooks receiver, a
Slack-shaped receiver, email to an aiosmtpd server, all on 127.0.0.1), delivered by one Celery worker through Redis.

Each deployment's ten alerts are raised in one transaction (one drift check finding ten things), with
group_wait=0. Reported: alerts -> notifications (the grouping ratio), p50/p95 seconds from each transaction's
commit to receipt, and lost or duplicated deliveries (by webhook-id, and for email by X-Watchkeeper-Notification).

Baseline, measured in the same run: one notification per alert per channel (no grouping, what a naive sender
sends), and the round trip of one bare POST to the same receiver (the floor under any delivery latency).

Then recovery: the HTTP receiver answers 503 for --down-seconds (default 300, the issue's five minutes) while
--recovery-deployments deployments each raise an alert; reported: how long after it answers again the last of
that backlog arrives (target: within 60 s), and lost or duplicated ids among it.

Targets (issue 12): p95 <= 1 s, 0 lost, 0 duplicated webhook-ids, backlog within 1 min of the receiver's return.

Always runs on its own database (BENCH_ALERTS_DATABASE_URL, default wk_bench_alerts, created and migrated if
missing) and Redis database (BENCH_ALERTS_REDIS_URL, default db 6), whatever DATABASE_URL and REDIS_URL say
(`make bench` exports the app's): it migrates, writes an append-only audit trail, and starts a worker, none of
which belongs in the app's database or queue.

    .venv/bin/python bench/alerts.py [--deployments 100] [--per-deployment 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["DATABASE_URL"] = os.environ.get("BENCH_ALERTS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wk_bench_alerts")
os.environ["REDIS_URL"] = os.environ.get("BENCH_ALERTS_REDIS_URL", "redis://127.0.0.1:6379/6")
os.environ.pop("CACHE_URL", None)
os.environ["ALERT_ALLOW_PRIVATE_URLS"] = "true"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SMTP_PORT = _free_port()
os.environ.update({"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "127.0.0.1",
                   "EMAIL_PORT": str(SMTP_PORT)})


sys.path.insert(0, str(ROOT))
from docker.services import ensure_database

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
import django

django.setup()
ensure_database(os.environ["DATABASE_URL"])
from django.core.management import call_command

call_command("migrate", verbosity=0)

import logging

from aiosmtpd.controller import Controller
from django.contrib.auth.models import User
from django.db import transaction

from monitoring import services
from monitoring.models import Alert, Deployment, Notification

RECEIVED: list[tuple[str, str, float, str]] = []  # (channel, id, received at, deployment slug)
LOCK = threading.Lock()
DOWN = threading.Event()  # set: the HTTP receiver answers 503 (an outage)


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        at = time.time()
        if DOWN.is_set():
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/slack"):
            slug = body["blocks"][0]["text"]["text"].rsplit(": ", 1)[1]
            entry = ("slack", self.path + ":" + str(len(RECEIVED)), at, slug)
        else:
            entry = ("webhook", self.headers["webhook-id"], at, body["data"]["deployment"]["slug"])
        with LOCK:
            RECEIVED.append(entry)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Mail:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        from email import message_from_bytes

        message = message_from_bytes(envelope.original_content)  # type: ignore[attr-defined]
        slug = message["Subject"].split(" on ", 1)[1].split(":", 1)[0]
        with LOCK:
            RECEIVED.append(("email", message["X-Watchkeeper-Notification"], time.time(), slug))
        return "250 OK"


def main() -> None:
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--per-deployment", type=int, default=10)
    parser.add_argument("--down-seconds", type=float, default=300.0)
    parser.add_argument("--recovery-deployments", type=int, default=20)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    mail = Controller(Mail(), hostname="127.0.0.1", port=SMTP_PORT)
    mail.start()

    # A fresh team per run: the audit log is append-only, so earlier runs' rows stay (in the bench's own database).
    run = time.strftime("%Y%m%d%H%M%S")
    team = services.team_get_or_create(name=f"Bench alerts {run}")
    by, _ = User.objects.get_or_create(username="bench-alerts")
    hook, _ = services.channel_create(team=team, kind="webhook", name="hook", target=base + "/hook", by=by)
    slack, _ = services.channel_create(team=team, kind="slack", name="slack", target=base + "/slack", by=by)
    email, _ = services.channel_create(team=team, kind="email", name="email", target="oncall@bench.local", by=by)
    services.routing_rule_create(team=team, name="all", channels=[hook, slack, email], min_severity="info",
                                 group_wait_s=0, by=by)
    deployments = [
        Deployment.objects.create(team=team, slug=f"b{run}-{i:03d}", name=f"b{run}-{i:03d}",
                                  feature_names=["f0"], class_labels=["0", "1"])
        for i in range(args.deployments)
    ]

    # The floor: a bare POST to the same receiver, as the transport makes it.
    from workers.notifications import http

    bare = []
    for _ in range(50):
        start = time.perf_counter()
        http.post(base + "/floor", body=b'{"data": {"deployment": {"slug": "floor"}}}', headers={"webhook-id": "floor"})
        bare.append(time.perf_counter() - start)
    with LOCK:
        RECEIVED.clear()

    env = dict(os.environ)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--queues=default", "--pool=threads",
         "--concurrency=8", "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--hostname=bench-alerts@%h"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    from dashboard.celery import app

    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=1.0, destination=[f"bench-alerts@{socket.gethostname()}"]):
            if time.monotonic() > deadline:
                raise SystemExit("the bench worker did not start")
        committed: dict[str, float] = {}
        for deployment in deployments:
            with transaction.atomic():
                for k in range(args.per_deployment):
                    services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key=f"f{k}",
                                         title=f"Feature f{k} drifted")
            committed[deployment.slug] = time.time()
        expected = 3 * args.deployments
        deadline = time.monotonic() + 120
        while len(RECEIVED) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # any duplicate has a moment to arrive
        main_received = list(RECEIVED)
        # Deployments of their own: a new group per deployment sends at once (group_wait=0), where an alert joining
        # the first phase's open groups would wait out their group_interval.
        fresh = [Deployment.objects.create(team=team, slug=f"r{run}-{i:03d}", name=f"r{run}-{i:03d}",
                                           feature_names=["f0"], class_labels=["0", "1"])
                 for i in range(args.recovery_deployments)]
        recovery = _recovery(fresh, down_s=args.down_seconds)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        mail.stop()
        server.shutdown()

    n_alerts = args.deployments * args.per_deployment
    notifications = Notification.objects.filter(channel__team=team)
    first = notifications.filter(pk__lte=recovery["first_backlog_pk"] - 1) if recovery["first_backlog_pk"] else notifications
    latencies = sorted(at - committed[slug] for _, _, at, slug in main_received if slug in committed)
    ids = Counter(i for channel, i, _, _ in main_received if channel in ("webhook", "email"))
    expected_ids = set(first.exclude(channel=slack).values_list("webhook_id", flat=True))
    lost = len(expected_ids - set(ids)) + max(0, args.deployments - sum(1 for c, *_ in main_received if c == "slack"))
    duplicated = sum(1 for count in ids.values() if count > 1)
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    naive = n_alerts * 3
    print(f"alerts: {n_alerts:,} across {args.deployments} deployments, 3 channels, one worker (8 threads)")
    print(f"notifications: {first.count():,} (baseline without grouping: {naive:,}; {naive / max(first.count(), 1):.1f}x fewer)")
    print(f"commit -> receipt: p50 {p50:.3f} s, p95 {p95:.3f} s over {len(latencies):,} receipts "
          f"(a bare POST: median {statistics.median(bare) * 1000:.1f} ms; p50 is {p50 / statistics.median(bare):.0f}x that)")
    print(f"lost: {lost}, duplicated ids: {duplicated}")
    print(f"recovery: receiver down {args.down_seconds:.0f} s while {recovery['backlog']} webhook notifications waited "
          f"({recovery['attempts']} failed attempts); the last arrived {recovery['after_up_s']:.1f} s after it was back "
          f"(target <= 60 s); lost {recovery['lost']}, duplicated {recovery['duplicated']}")


def _recovery(deployments: list[Deployment], *, down_s: float) -> dict:
    """Take the HTTP receiver down, raise one alert per deployment, bring it back after down_s, and time how long
    the backlog (the webhook channel's notifications) takes to arrive."""
    from monitoring.models import DeliveryAttempt

    first_pk = (Notification.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    DOWN.set()
    went_down = time.monotonic()
    for deployment in deployments:
        services.alert_raise(deployment=deployment, kind=Alert.Kind.NO_PREDICTIONS, dedup_key="recovery",
                             title="No predictions for 6 h")
    time.sleep(max(0.0, down_s - (time.monotonic() - went_down)))
    backlog = Notification.objects.filter(pk__gte=first_pk, channel__kind="webhook")
    expected = set(backlog.values_list("webhook_id", flat=True))
    with LOCK:
        RECEIVED.clear()
    up_at = time.time()
    DOWN.clear()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with LOCK:
            got = {i for c, i, _, _ in RECEIVED if c == "webhook"}
        if expected <= got:
            break
        time.sleep(0.2)
    time.sleep(2)
    with LOCK:
        webhook = [(i, at) for c, i, at, _ in RECEIVED if c == "webhook"]
    counts = Counter(i for i, _ in webhook)
    arrived = [at for i, at in webhook if i in expected]
    return {
        "first_backlog_pk": first_pk,
        "backlog": len(expected),
        "attempts": DeliveryAttempt.objects.filter(notification__in=backlog, outcome="transient").count(),
        "after_up_s": (max(arrived) - up_at) if arrived else float("nan"),
        "lost": len(expected - set(counts)),
        "duplicated": sum(1 for i, n in counts.items() if n > 1 and i in expected),
    }


if __name__ == "__main__":
    main()
