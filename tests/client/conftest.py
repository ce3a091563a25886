"""The client against the live server (pytest-django's, on the real test database), through a Gateway."""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings
from django.db import transaction

from monitoring import indexing, services
from monitoring.models import Deployment, PredictionBatch
from tests.client.gateway import Gateway
from tests.conftest import trained_model


@pytest.fixture(scope="module", autouse=True)
def _serving_threads_stopped_after():
    yield
    # The serving watch and the last-seen writer each hold a connection to the test database until stopped.
    from dashboard.serving_watch import watch
    from monitoring.services import serving

    watch.stop()
    serving._seen.stop()


@pytest.fixture
def gateway(live_server):
    gateway = Gateway(live_server.url)
    yield gateway
    gateway.close()


@pytest.fixture
def token(deployment):
    _, plaintext = services.token_create(deployment=deployment, name="serving", by=None)
    return plaintext


@pytest.fixture
def candidate(deployment, operator):
    """v2: another real model for the same schema, awaiting approval."""
    onnx_bytes, recipe = trained_model(C=0.01)
    return services.version_register(deployment=deployment, data=onnx_bytes, recipe=recipe, by=operator)


def stored_rows(deployment) -> int:
    return sum(PredictionBatch.objects.filter(deployment=deployment).values_list("n_rows", flat=True))


def indexing_settled(deployment) -> None:
    """Index what the client left to the indexer (Prefer: respond-async) and let a session worker that has a task
    for it finish: a worker's transaction must not meet the test database's flush (a deadlock)."""
    services.batches_index(deployment_id=deployment.pk, wait=True)  # waits for a worker at work, takes the rest
    flags = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + 10
    while flags.exists(indexing.pending_flag(deployment.pk)) and time.monotonic() < deadline:
        time.sleep(0.1)  # a task still queued: with no worker in this process it never starts, hence the bound
    with transaction.atomic():  # a worker that took the task holds this lock until its (empty) run ends
        list(Deployment.objects.select_for_update(no_key=True).filter(pk=deployment.pk).values_list("pk", flat=True))
