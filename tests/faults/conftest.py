"""The private stack (tests/faults/stack.py), one per session: Postgres, Redis, the app and a worker, started here."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import urllib3

from tests.faults.stack import Stack

FEATURES = ["a", "b", "c"]
CLASSES = ["no", "yes"]


def _missing_tools() -> list[str]:
    from tests.faults.stack import postgres_bin

    missing = [tool for tool in ("redis-server",) if shutil.which(tool) is None]
    for tool in ("initdb", "pg_ctl", "createdb"):
        try:
            postgres_bin(tool)
        except FileNotFoundError:
            missing.append(tool)
    return missing


# The deployments the suite's tests use, all made in one `manage.py shell` at the start: a Django process on this
# shared machine takes many seconds to start, so one per test would cost more than the faults themselves.
DEPLOYMENTS = ("pg-restart", "skew", "redis-down", "disk-full", "kill-index")


@dataclass
class Seeded:
    slug: str
    token: str
    deployment_id: int
    team_id: int


SEED = """
import json
from django.contrib.auth.models import User
from monitoring import services
from monitoring.models import Deployment
team = services.team_get_or_create(name="Faults")
user, _ = User.objects.get_or_create(username="fiona")
seeded = {{}}
for slug in {slugs!r}:
    deployment = services.deployment_create(team=team, name=slug, slug=slug, feature_names={features!r},
                                            class_labels={classes!r}, by=user)
    _, token = services.token_create(deployment=deployment, name="client", by=None)
    seeded[slug] = {{"slug": slug, "token": token, "deployment_id": deployment.pk, "team_id": team.pk}}
# Alerts of redis-down go to a webhook the test listens on (tests/faults/test_redis_down.py).
channel, _ = services.channel_create(team=team, kind="webhook", name="faults hook",
                                     target="http://127.0.0.1:{hook_port}/hook", by=user)
services.routing_rule_create(team=team, name="redis-down", channels=[channel], min_severity="info",
                             deployment=Deployment.objects.get(slug="redis-down"), group_wait_s=0, by=user)
# Two deployments with a real model (the breast-cancer logistic regression of tests/conftest.py), an evaluation
# set, a reference set and, for drift, a window of recent traffic (tests/faults/test_worker_killed.py).
from datetime import timedelta
from django.utils import timezone
from tests.builders import make_deployment
from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model
onnx_bytes, recipe = trained_model()
X_train, y_train, X_test, y_test = breast_cancer_split()
seeded["models"] = {{}}
for slug in ("kill-evaluate", "kill-drift"):
    deployment = make_deployment(team=team, by=user, name=slug, slug=slug, feature_names=FEATURES, class_labels=CLASSES,
                                 model=onnx_bytes, recipe=recipe, train=(X_train, y_train), holdout=(X_test, y_test))
    seeded["models"][slug] = deployment.pk
start = timezone.now() - timedelta(hours=2)
services.predictions_ingest(deployment=deployment, rows=[
    {{"id": f"r{{i}}", "timestamp": start + timedelta(seconds=i), "features": [float(v) for v in X_test[i]],
      "predicted_label": str(y_test[i])}} for i in range(len(X_test))])
print(json.dumps(seeded))
"""


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """The private stack, once per session (migrating a fresh database takes most of a minute here)."""
    if missing := _missing_tools():
        pytest.fail(f"the faults suite starts its own Postgres and Redis; not installed: {', '.join(missing)}")
    stack = Stack(tmp_path_factory.mktemp("faults"))
    # A SIGTERM to pytest (a CI timeout) must still stop the private Postgres, Redis, web and workers.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start_services()
        seeded = stack.django(SEED.format(slugs=list(DEPLOYMENTS), features=FEATURES, classes=CLASSES,
                                          hook_port=stack.hook_port))
        stack.seeded = {slug: Seeded(**values) for slug, values in seeded.items() if slug in DEPLOYMENTS}
        stack.seeded_models = seeded["models"]
        stack.worker_ready()
        yield stack
    finally:
        stack.destroy()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def seed(stack: Stack, name: str) -> Seeded:
    """The deployment seeded for this test (3 features, 2 classes), and an ingestion token for it."""
    return stack.seeded[name]


def rows(n: int, *, prefix: str, at: datetime | None = None) -> list[dict]:
    at = at or datetime.now(UTC) - timedelta(minutes=1)
    return [{"id": f"{prefix}-{i}", "timestamp": at.isoformat(), "features": [i * 0.1, 1.0, -1.0],
             "predicted_label": CLASSES[i % 2]} for i in range(n)]


def post_batch(url: str, seeded: Seeded, batch: list[dict], *, key: str | None = None) -> urllib3.BaseHTTPResponse:
    headers = {"Authorization": f"Bearer {seeded.token}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return urllib3.request("POST", f"{url}/api/v1/deployments/{seeded.slug}/predictions",
                           body=json.dumps({"predictions": batch}).encode(), headers=headers, retries=False,
                           timeout=urllib3.Timeout(connect=5, read=30))


def stored(stack: Stack, seeded: Seeded) -> tuple[int, int, int]:
    """(rows in the batches, index rows, distinct ids in the index) of the deployment, read from its database."""
    (batch_rows,) = stack.sql("SELECT coalesce(sum(n_rows), 0) FROM monitoring_predictionbatch WHERE deployment_id = %s",
                              seeded.deployment_id)[0]
    index_rows, distinct = stack.sql(
        "SELECT count(*), count(DISTINCT request_id) FROM monitoring_prediction WHERE deployment_id = %s",
        seeded.deployment_id)[0]
    return int(batch_rows), int(index_rows), int(distinct)


@pytest.fixture(scope="session")
def web(stack) -> str:
    """The app under gunicorn on the private stack, as production runs it (gthread workers)."""
    return stack.web_url
