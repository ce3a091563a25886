"""/healthz (liveness: no dependencies) and /readyz (database, broker, worker heartbeats), over real HTTP."""

from __future__ import annotations

import json
import time

import pytest

from dashboard.celery import (
    HEARTBEAT_TTL_SECONDS,
    heartbeat_clear,
    heartbeat_write,
    redis_client,
    worker_heartbeats,
)
from tests.conftest import wait_for


@pytest.fixture
def no_worker_beats_here(settings):
    """A heartbeat prefix no worker process writes: as if no worker were running, whatever else runs."""
    settings.WORKER_HEARTBEAT_KEY_PREFIX = f"test-no-workers-{time.monotonic_ns()}"
    yield settings.WORKER_HEARTBEAT_KEY_PREFIX
    client = redis_client(settings.REDIS_URL)
    client.delete(*client.keys(settings.WORKER_HEARTBEAT_KEY_PREFIX + "*") or ["-"])


@pytest.mark.django_db
def test_healthz_answers_without_touching_the_database(client, viewer, django_assert_num_queries):
    with django_assert_num_queries(0):
        anonymous = client.get("/healthz")
    client.force_login(viewer)
    with django_assert_num_queries(0):
        logged_in = client.get("/healthz")

    assert anonymous.status_code == logged_in.status_code == 200
    assert json.loads(anonymous.content) == json.loads(logged_in.content) == {"status": "ok"}
    assert "no-cache" in anonymous["Cache-Control"]


@pytest.mark.django_db
def test_healthz_still_answers_when_the_broker_is_down(client, settings, django_assert_num_queries):
    settings.CELERY_BROKER_URL = settings.REDIS_URL = "redis://127.0.0.1:1/0"

    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200


@pytest.mark.django_db
def test_readyz_is_unavailable_when_no_worker_has_written_a_heartbeat(client, no_worker_beats_here):
    response = client.get("/readyz")

    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["status"] == "unavailable"
    assert body["database"] == {"ok": True, "engine": "postgresql"}
    assert body["broker"] == {"ok": True, "mode": "redis"}
    assert body["workers"] == {"ok": False, "count": 0, "queues": []}


@pytest.mark.django_db
def test_readyz_is_unavailable_quickly_when_the_broker_does_not_answer(client, settings):
    settings.CELERY_BROKER_URL = settings.REDIS_URL = "redis://127.0.0.1:1/0"

    started = time.perf_counter()
    response = client.get("/readyz")

    assert time.perf_counter() - started < 2
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["broker"]["ok"] is False and body["broker"]["error"] == "ConnectionError"
    assert body["workers"]["ok"] is False and body["database"]["ok"] is True


@pytest.mark.django_db
def test_readyz_reports_tasks_run_in_process_without_asking_redis(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_BROKER_URL = settings.REDIS_URL = "redis://127.0.0.1:1/0"  # never tried

    response = client.get("/readyz")

    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["broker"] == {"ok": True, "mode": "in-process"}
    assert body["workers"]["mode"] == "in-process"


@pytest.mark.django_db
def test_a_heartbeat_counts_until_its_key_expires_and_names_no_host(client, settings, no_worker_beats_here):
    heartbeat_write(hostname="default@box", queues=["default"])
    heartbeat_write(hostname="maintenance@box", queues=["maintenance"])

    body = json.loads(client.get("/readyz").content)

    assert body["status"] == "ok"
    assert body["workers"] == {"ok": True, "count": 2, "queues": ["default", "maintenance"]}
    assert "box" not in json.dumps(body)
    ttl = redis_client(settings.REDIS_URL).ttl(f"{no_worker_beats_here}:default@box")
    assert HEARTBEAT_TTL_SECONDS - 2 <= ttl <= HEARTBEAT_TTL_SECONDS
    # A worker that stops says so; one that dies stops being counted when its key expires.
    heartbeat_clear(hostname="default@box")
    redis_client(settings.REDIS_URL).delete(f"{no_worker_beats_here}:maintenance@box")
    assert worker_heartbeats() == []
    assert client.get("/readyz").status_code == 503


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_readyz_is_ready_while_the_real_worker_beats(client, celery_worker_process):
    # The fixture's worker writes its first beat as it starts; the page only reads Redis.
    response = wait_for(lambda: (r := client.get("/readyz")).status_code == 200 and r, timeout=30)

    body = json.loads(response.content)
    assert body["workers"]["ok"] is True and body["workers"]["count"] >= 1
    assert set(body["workers"]["queues"]) >= {"default", "maintenance"}
