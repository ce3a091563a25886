"""The embedded fallback of `make demo`: SQLite and in-process tasks, when neither Postgres nor Redis answers.

Run as subprocesses, the way docker/demo.sh runs them, so the settings are read from the environment
exactly as in a real fallback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.receivers import start_http_receiver, start_smtp_receiver

PROBE = """
from django.contrib.auth.models import User
from django.test import Client
from monitoring.models import Deployment, MaintenanceJob

client = Client(HTTP_HOST="127.0.0.1")
client.force_login(User.objects.get(username="demo"))
digits = Deployment.objects.get(slug="digits-mlp")
queued = client.post("/d/digits-mlp/jobs", {"kind": "compress_int8", "version": digits.active_version().id})
job = MaintenanceJob.objects.get(deployment=digits)
print(json.dumps({
    "pages": [client.get(url).status_code for url in ("/", "/d/wine-forest/", "/alerts", "/api/v1/openapi.json")],
    "live": json.loads(client.get("/healthz").content),
    "ready": [(r := client.get("/readyz")).status_code, json.loads(r.content)],
    "queued": queued.status_code,
    "job": [job.status, job.candidate.status if job.candidate else None],
}))
"""


def test_the_demo_runs_on_embedded_sqlite_with_in_process_tasks(tmp_path):
    hook, smtp = start_http_receiver(), start_smtp_receiver()
    try:
        _run_embedded_demo(tmp_path, hook, smtp)
    finally:
        hook.server.shutdown()
        smtp.controller.stop()


def _run_embedded_demo(tmp_path, hook, smtp):
    env = {
        key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "TASKS_IN_PROCESS")
    }
    env.update(
        WATCHKEEPER_EMBEDDED="true",
        SQLITE_PATH=str(tmp_path / "demo.sqlite3"),
        MEDIA_ROOT=str(tmp_path / "media"),
        SECRET_KEY="test-only",
        # A dead broker address: in-process tasks must never try it.
        REDIS_URL="redis://127.0.0.1:1/0",
        # Alerts to the local receivers, as docker/demo.sh sets them up.
        ALERT_ALLOW_PRIVATE_URLS="true", EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp.port),
    )

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    manage("migrate", "--noinput", "-v0")
    manage("seed_demo", "--days", "12", "--per-day", "60")
    result = json.loads(manage("shell", "-c", "import json\n" + PROBE).strip().splitlines()[-1])

    assert result["pages"] == [200, 200, 200, 200]
    assert result["live"] == {"status": "ok"}
    status, ready = result["ready"]
    assert status == 200 and ready["database"] == {"ok": True, "engine": "sqlite"}
    assert ready["broker"]["mode"] == ready["workers"]["mode"] == "in-process"
    assert result["queued"] == 302
    assert result["job"] == ["succeeded", "candidate"]

    # Alert delivery with no beat and no worker: demo.sh's notifier runs the sweep in process. The wine
    # deployment's drift episode arrives as one grouped notification at the webhook and in the mailbox.
    manage("demo_alerting", "--webhook-url", hook.url, "--email", "oncall@demo.local",
           "--secret-file", str(tmp_path / "secret"))
    manage("deliver_notifications", "--every", "2", "--for", "40")
    wine = [r.json() for r in hook.received if r.json()["data"]["deployment"]["slug"] == "wine-forest"]
    assert len(wine) == 1, [r.json()["data"]["summary"] for r in hook.received]
    kinds = {a["kind"] for a in wine[0]["data"]["alerts"]}
    assert {"data_drift", "prediction_drift"} <= kinds and len(wine[0]["data"]["alerts"]) >= 3
    assert sum("Wine" in str(m["Subject"]) for m in smtp.mailbox.messages) == 1
