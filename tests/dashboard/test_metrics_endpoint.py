"""GET /metrics: who may scrape it, what it says about the fleet (in a fixed number of queries), and the series
from real processes: two gunicorn workers started by docker/entrypoint.sh and a real Celery worker, all writing
to one metrics directory (prometheus_client's multiprocess mode), scraped over HTTP."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from monitoring import services
from monitoring.models import AuditEvent, DriftReport, EvaluationRun, PredictionBatch
from tests.builders import spawn_worker, worker_env
from tests.conftest import FEATURES, ROOT
from tests.receivers import start_http_receiver

TOKEN = "scrape-token-for-tests-0123456789"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "watchkeeper.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(client: Client | None = None) -> Samples:
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.content.decode())


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETS = []
    return TOKEN


def _rows(n: int, *, start: int = 0) -> list[dict]:
    now = timezone.now().isoformat()
    return [{"id": f"r-{i}", "timestamp": now, "features": [0.5] * len(FEATURES), "predicted_label": "1"}
            for i in range(start, start + n)]


# Who may scrape


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-of-the-right-shape-0123", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_it_refuses_a_scrape_without_the_right_token_and_says_nothing_else(deployment, metrics_token, header):
    events = AuditEvent.objects.count()
    headers = {"HTTP_AUTHORIZATION": header} if header else {}

    response = Client().get("/metrics", **headers)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.content.decode()
    assert "watchkeeper_" not in body and deployment.slug not in body and TOKEN not in body
    assert AuditEvent.objects.count() == events


def test_a_dashboard_login_does_not_open_it(deployment, approver, metrics_token):
    client = Client()
    client.force_login(approver)

    response = client.get("/metrics")

    assert response.status_code == 401 and b"watchkeeper_" not in response.content


def test_with_neither_a_token_nor_networks_set_it_refuses_everyone(deployment, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETS = "", []

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 403 and b"watchkeeper_" not in response.content


def test_allowed_networks_admit_only_their_addresses_and_still_want_the_token_when_one_is_set(deployment, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETS = "", ["10.0.0.0/8", "fd00::/8"]

    outside = Client(REMOTE_ADDR="192.168.1.5").get("/metrics")
    inside = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    inside_v6 = Client(REMOTE_ADDR="fd00::7").get("/metrics")
    settings.METRICS_TOKEN = TOKEN
    inside_without_token = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    outside_with_token = Client(REMOTE_ADDR="192.168.1.5").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    inside_with_token = Client(REMOTE_ADDR="10.1.2.3").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert (outside.status_code, inside.status_code, inside_v6.status_code) == (403, 200, 200)
    assert (inside_without_token.status_code, outside_with_token.status_code, inside_with_token.status_code) == (401, 403, 200)
    assert b"watchkeeper_" not in outside.content + inside_without_token.content + outside_with_token.content


# What it says about the fleet


def _fleet(deployment, approver, team, n_more: int) -> None:
    """`deployment` with every figure set, and n_more bare deployments beside it."""
    v1 = deployment.versions.get(number=1)
    now = timezone.now()
    for source, accuracy, f1 in (("production", 0.91, 0.88), ("evaluation_set", 0.95, 0.94)):
        EvaluationRun.objects.create(deployment=deployment, version=v1, source=source, status="succeeded",
                                     metrics={"accuracy": accuracy - 0.2, "f1_macro": f1 - 0.2}, measured_at=now - timedelta(days=1))
        EvaluationRun.objects.create(deployment=deployment, version=v1, source=source, status="succeeded",
                                     metrics={"accuracy": accuracy, "f1_macro": f1}, measured_at=now)
        # Newer, but failed: the gauges keep the newest successful run.
        EvaluationRun.objects.create(deployment=deployment, version=v1, source=source, status="failed",
                                     metrics={"accuracy": 0.01, "f1_macro": 0.01}, measured_at=now + timedelta(minutes=1))
    DriftReport.objects.create(deployment=deployment, window_start=now - timedelta(hours=48), window_end=now - timedelta(hours=24),
                               n_reference=1, n_current=1, share_drifted=0.9)
    DriftReport.objects.create(deployment=deployment, window_start=now - timedelta(hours=24), window_end=now,
                               n_reference=1, n_current=1, share_drifted=0.25)
    services.alert_raise(deployment=deployment, kind="data_drift", dedup_key="a", title="a", severity="critical")
    services.alert_raise(deployment=deployment, kind="data_drift", dedup_key="b", title="b", severity="warning")
    services.predictions_ingest(deployment=deployment, rows=_rows(30))
    services.labels_ingest(deployment=deployment, rows=[{"id": "r-0", "label": "1"}])
    for i in range(n_more):
        services.deployment_create(team=team, name=f"Other {i}", slug=f"other-{i}", feature_names=FEATURES,
                                   class_labels=["0", "1"], by=approver)


@pytest.mark.parametrize("n_more", [2, 25])
def test_per_deployment_gauges_take_four_queries_whatever_the_fleet(
    deployment, approver, team, metrics_token, n_more, django_assert_max_num_queries
):
    _fleet(deployment, approver, team, n_more)

    with django_assert_max_num_queries(4):
        samples = scrape()

    slug = deployment.slug
    assert value(samples, "watchkeeper_deployment_accuracy", deployment=slug, source="production") == pytest.approx(0.91)
    assert value(samples, "watchkeeper_deployment_accuracy", deployment=slug, source="evaluation_set") == pytest.approx(0.95)
    assert value(samples, "watchkeeper_deployment_f1_macro", deployment=slug, source="production") == pytest.approx(0.88)
    assert value(samples, "watchkeeper_deployment_drift_share", deployment=slug) == pytest.approx(0.25)  # the newest
    assert value(samples, "watchkeeper_deployment_open_alerts", deployment=slug, severity="critical") == 1
    assert value(samples, "watchkeeper_deployment_open_alerts", deployment=slug, severity="warning") == 1
    assert value(samples, "watchkeeper_deployment_predictions_last_hour", deployment=slug) == 30
    assert 0 <= value(samples, "watchkeeper_deployment_label_lag_seconds", deployment=slug) < 60
    deployments = {dict(labels)["deployment"] for name, labels in samples if name == "watchkeeper_deployment_predictions_last_hour"}
    assert deployments == {slug} | {f"other-{i}" for i in range(n_more)}
    # A deployment without labels or reports has no such series (not a misleading zero).
    assert ("watchkeeper_deployment_label_lag_seconds", frozenset({("deployment", "other-0")})) not in samples
    assert ("watchkeeper_deployment_drift_share", frozenset({("deployment", "other-0")})) not in samples


def test_the_indexing_backlog_and_queue_depths_are_read_at_scrape(deployment, metrics_token, deferred, settings):
    from dashboard.celery import redis_client

    services.predictions_ingest(deployment=deployment, rows=_rows(40))  # deferred: stored, waiting for the indexer
    # A broker database no worker of the session consumes: one would pop these three non-messages (and die on them).
    settings.CELERY_BROKER_URL = settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/15"
    client = redis_client(settings.CELERY_BROKER_URL)
    client.rpush("maintenance", "a", "b", "c")
    try:
        samples = scrape()
    finally:
        client.delete("maintenance")

    assert value(samples, "watchkeeper_indexing_backlog_batches", deployment=deployment.slug) == 1
    assert value(samples, "watchkeeper_indexing_backlog_rows", deployment=deployment.slug) == 40
    assert value(samples, "watchkeeper_queue_depth", queue="maintenance") == 3
    assert value(samples, "watchkeeper_broker_up") == 1
    services.batches_index(deployment_id=deployment.pk)
    assert value(scrape(), "watchkeeper_indexing_backlog_rows", deployment=deployment.slug) == 0


def test_ingested_rows_are_counted_accepted_and_rejected(deployment, operator, metrics_token):
    before = scrape()
    _, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    url = f"/api/v1/deployments/{deployment.slug}/predictions"

    accepted = client.post(url, data=json.dumps({"predictions": _rows(5)}), content_type="application/json")
    bad = _rows(3, start=100)
    bad[1]["features"] = [0.5]  # the wrong width: the whole batch is refused
    refused = client.post(url, data=json.dumps({"predictions": bad}), content_type="application/json")
    labels = client.post(f"/api/v1/deployments/{deployment.slug}/labels",
                         data=json.dumps({"labels": [{"id": "r-0", "label": "1"}, {"id": "r-1", "label": "0"}]}), content_type="application/json")
    after = scrape()

    assert (accepted.status_code, refused.status_code, labels.status_code) == (201, 422, 200)
    assert PredictionBatch.objects.filter(deployment=deployment).count() == 1
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)
    assert delta("watchkeeper_ingest_rows_total", kind="predictions", outcome="accepted") == 5
    assert delta("watchkeeper_ingest_rows_total", kind="predictions", outcome="rejected") == 3
    assert delta("watchkeeper_ingest_rows_total", kind="labels", outcome="accepted") == 2
    route = "api:predictions_ingest"
    assert delta("watchkeeper_http_requests_total", route=route, method="POST", status="201") == 1
    assert delta("watchkeeper_http_requests_total", route=route, method="POST", status="422") == 1
    # Route names, never raw paths: no series names the deployment's slug in its route.
    assert not any(deployment.slug in dict(labels).get("route", "") for _, labels in after)


def test_notification_deliveries_are_counted_by_channel_kind_and_outcome(deployment, approver, team, metrics_token, settings):
    from workers.notifications import delivery

    settings.ALERT_ALLOW_PRIVATE_URLS = True  # the receiver is on 127.0.0.1

    receiver = start_http_receiver()
    try:
        channel, _ = services.channel_create(team=team, kind="webhook", name="hook", target=receiver.url, by=approver)
        services.routing_rule_create(team=team, name="all", channels=[channel], by=approver, min_severity="info", group_wait_s=0)
        before = scrape()
        services.alert_raise(deployment=deployment, kind="data_drift", dedup_key="d1", title="Drift")
        delivery.deliver_due()
        receiver.down = True
        services.alert_raise(deployment=deployment, kind="metric_below_threshold", dedup_key="d2", title="Acc",
                             severity="critical")
        with_time = timezone.now() + timedelta(minutes=10)
        import time_machine

        with time_machine.travel(with_time, tick=False):
            delivery.deliver_due()
        after = scrape()
    finally:
        receiver.server.shutdown()

    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)
    assert delta("watchkeeper_notification_deliveries_total", channel_kind="webhook", outcome="sent") == 1
    assert delta("watchkeeper_notification_deliveries_total", channel_kind="webhook", outcome="retrying") >= 1
    assert delta("watchkeeper_notification_failures_total", channel_kind="webhook") >= 1


def test_every_series_the_grafana_dashboard_draws_is_one_the_endpoint_serves(deployment, metrics_token):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    # Family names: a counter's without _total, a histogram's without _bucket (the parser's convention).
    served = {family.name for family in text_string_to_metric_families(response.content.decode())}
    drawn = {re.sub(r"_(total|bucket|sum|count)$", "", name)
             for name in re.findall(r"\bwatchkeeper_[a-z0-9_]+", DASHBOARD.read_text())}

    assert len(drawn) >= 15
    assert drawn <= served, f"the dashboard draws series /metrics does not serve: {sorted(drawn - served)}"


# Real processes: gunicorn (two workers, as docker/entrypoint.sh starts it) and a Celery worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, *, token: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=(headers or {}) | ({"Authorization": f"Bearer {token}"} if token else {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def live_stack(transactional_db, tmp_path, settings):
    """gunicorn and a Celery worker on the test database, writing their series under tmp_path/metrics."""
    metrics_dir = tmp_path / "metrics"
    port = _free_port()
    env = worker_env(tmp_path, MEDIA_ROOT=str(settings.MEDIA_ROOT), METRICS_TOKEN=TOKEN, METRICS_DIR=str(metrics_dir), WEB_WORKERS="2", WEB_THREADS="4", LOG_FORMAT="json",
                     BIND=f"127.0.0.1:{port}", PATH=f"{ROOT / '.venv' / 'bin'}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    web_log = open(tmp_path / "web.log", "w")
    web = subprocess.Popen(["bash", str(ROOT / "docker" / "entrypoint.sh"), "web"], cwd=ROOT, env=env,
                           stdout=web_log, stderr=subprocess.STDOUT)
    worker_dir = metrics_dir / "worker"  # what the entrypoint's `worker` role makes; this worker has a test queue
    worker_dir.mkdir(parents=True, exist_ok=True)
    worker, worker_log = spawn_worker(base=tmp_path, log_name="worker.log", args=["--queues=metrics-test"],
                                      env=env | {"PROMETHEUS_MULTIPROC_DIR": str(worker_dir)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert web.poll() is None, (tmp_path / "web.log").read_text()
        try:
            if _get(f"{url}/healthz")[0] == 200:
                break
        except OSError:
            time.sleep(0.3)
    else:
        raise AssertionError("gunicorn did not answer within 60 s")
    yield url, metrics_dir, tmp_path
    for process in (web, worker):
        process.terminate()
    for process in (web, worker):
        process.wait(timeout=30)
    web_log.close()
    worker_log.close()


@pytest.mark.worker
def test_a_live_scrape_sums_every_web_worker_and_the_celery_worker(deployment, live_stack):
    from workers.tasks import evaluate_deployment_task, index_batches_task

    url, metrics_dir, _base = live_stack
    before = parse(_get(f"{url}/metrics", token=TOKEN)[2].decode())  # after the start-up's probes
    for _ in range(40):  # spread over both gunicorn workers (each a gthread process)
        assert _get(f"{url}/healthz")[0] == 200
    refused = _get(f"{url}/metrics")
    index_batches_task.apply_async((deployment.pk,), queue="metrics-test")
    evaluate_deployment_task.apply_async((deployment.pk,), queue="metrics-test")

    def task_counted() -> Samples | None:
        samples = parse(_get(f"{url}/metrics", token=TOKEN)[2].decode())
        done = value(samples, "watchkeeper_task_runs_total", task="workers.tasks.evaluate_deployment_task", outcome="succeeded")
        return samples if done >= 1 else None

    from tests.conftest import wait_for

    samples = wait_for(task_counted, timeout=120, interval=0.5)

    assert refused[0] == 401 and b"watchkeeper_" not in refused[2]
    healthz = {"route": "healthz", "method": "GET"}
    assert value(samples, "watchkeeper_http_requests_total", **healthz, status="200") - value(
        before, "watchkeeper_http_requests_total", **healthz, status="200") == 40
    assert value(samples, "watchkeeper_http_requests_total", route="metrics", method="GET", status="401") == 1
    assert value(samples, "watchkeeper_http_request_duration_seconds_count", **healthz) - value(
        before, "watchkeeper_http_request_duration_seconds_count", **healthz) == 40
    assert value(samples, "watchkeeper_task_runs_total", task="workers.tasks.index_batches_task", outcome="succeeded") == 1
    assert value(samples, "watchkeeper_task_duration_seconds_count", task="workers.tasks.evaluate_deployment_task") == 1
    # The evaluation the worker ran shows as the deployment's gauge in the same scrape.
    assert value(samples, "watchkeeper_deployment_accuracy", deployment=deployment.slug, source="evaluation_set") > 0.9
    # Summed from the files of separate processes: the web workers' and the Celery pool process's.
    assert list((metrics_dir / "web").glob("*.db")) and list((metrics_dir / "worker").glob("*.db"))


@pytest.mark.worker
def test_under_log_format_json_gunicorn_and_the_worker_write_json_lines_with_their_context(deployment, live_stack):
    from workers.tasks import index_batches_task

    url, _, base = live_stack
    status, headers, _ = _get(f"{url}/healthz", headers={"X-Request-ID": "probe-0123456789"})
    task = index_batches_task.apply_async((deployment.pk,), queue="metrics-test")

    def lines(name: str) -> list[dict]:
        text = (base / name).read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    from tests.conftest import wait_for

    task_lines = wait_for(lambda: [line for line in lines("worker.log") if line.get("task_id") == task.id], timeout=60)
    web = (base / "web.log").read_text().splitlines()

    assert status == 200 and headers["X-Request-ID"] == "probe-0123456789"
    assert web and all(line.startswith("{") for line in web if line.strip()), web[:5]  # gunicorn's own lines too
    access = [json.loads(line) for line in web if '"probe-0123456789"' in line]
    assert access and access[0]["logger"] == "watchkeeper.access" and access[0]["route"] == "healthz"
    assert any(json.loads(line)["logger"].startswith("gunicorn") for line in web if line.strip())
    assert {line["task_name"] for line in task_lines} == {"workers.tasks.index_batches_task"}


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    return queries + [variable["query"]["query"] for variable in dashboard.get("templating", {}).get("list", [])]


def test_every_label_the_grafana_dashboard_groups_or_filters_by_is_on_the_series_served(deployment, metrics_token):
    # Traffic first, so the request and ingestion series have samples (and so labels) in the scrape.
    token = services.token_create(deployment=deployment, name="scrape test", by=None)[1]
    client = Client()
    ingested = client.post(f"/api/v1/deployments/{deployment.slug}/predictions", content_type="application/json",
                           data={"predictions": [{"id": "g-1", "timestamp": timezone.now().isoformat(),
                                                  "features": [0.0] * len(FEATURES), "predicted_label": "0"}]},
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert ingested.status_code == 201, ingested.content[:300]
    samples = [sample for family in text_string_to_metric_families(
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()) for sample in family.samples]
    labels_of: dict[str, set[str]] = {}
    for sample in samples:
        labels_of.setdefault(sample.name, set()).update(sample.labels)

    checked = 0
    for query in _dashboard_queries():
        names = set(re.findall(r"\bwatchkeeper_[a-z0-9_]+", query))
        wanted = {label for group in re.findall(r"\bby \(([^)]*)\)", query) for label in group.replace(" ", "").split(",")}
        wanted |= set(re.findall(r"([a-z_]+)=~?\"", query))
        wanted |= set(re.findall(r"label_values\([a-z0-9_]+, ([a-z_]+)\)", query))
        for name in names & set(labels_of):  # a series with no sample yet shows no labels to check
            assert wanted - {"le"} <= labels_of[name], f"{query}: {name} has labels {sorted(labels_of[name])}"
            checked += 1
    assert checked >= 8  # the request, ingestion and per-deployment series at least
