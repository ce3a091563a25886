"""The client against the live server (pytest-django's, on the real test database), through a Gateway."""

from __future__ import annotations

import pytest

from monitoring import services
from monitoring.models import PredictionBatch
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
