"""Shared fixtures: named users with roles, a real deployment with a real ONNX model, and a real Celery worker."""

from __future__ import annotations

import os
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test.utils import override_settings
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from monitoring import services
from monitoring.maintenance.export import estimator_to_onnx, recipe_dump
from monitoring.models import Membership, Role
from monitoring.services import ingestion
from tests.builders import make_deployment, spawn_worker, worker_env

ROOT = Path(__file__).resolve().parent.parent
FEATURES = [f"f{i}" for i in range(30)]
CLASSES = ["0", "1"]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database, marked disposable: the audit log's TRUNCATE trigger (migration 0012) lets Django
    empty it between transactional tests there, and nowhere else."""
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f'ALTER DATABASE "{connection.settings_dict["NAME"]}" SET watchkeeper.audit_truncate = \'allow\'')


@pytest.fixture(scope="session", autouse=True)
def _collected_static(tmp_path_factory):
    """The static files as production serves them: `collectstatic` into a directory of this session's, whose
    manifest gives every `{% static %}` its hashed name (pages fail without it, as in production). Subprocesses
    (the worker, the embedded demo) inherit it through STATIC_ROOT."""
    root = tmp_path_factory.mktemp("static")
    previous = os.environ.get("STATIC_ROOT")
    os.environ["STATIC_ROOT"] = str(root)
    with override_settings(STATIC_ROOT=root):
        call_command("collectstatic", "--noinput", verbosity=0)
        yield root
    if previous is None:
        os.environ.pop("STATIC_ROOT", None)
    else:
        os.environ["STATIC_ROOT"] = previous


@pytest.fixture(scope="session")
def live_server(request, _collected_static):
    """pytest-django's live server, with static files served by WhiteNoise from the collected files, as in
    production: its own static handler serves them through the finders, which know no hashed name."""
    from pytest_django.live_server_helper import LiveServer

    addr = request.config.getvalue("liveserver") or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost"
    server = LiveServer(addr, start=False)
    server.thread.static_handler = lambda app: app  # LiveServerThread wraps its WSGI app in this; WhiteNoise is in it
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def signing_key_file(tmp_path_factory):
    """A temporary Ed25519 signing key for the session (docs/serving.md); subprocesses inherit it."""
    from monitoring.signing import key_file_create

    path = tmp_path_factory.mktemp("signing") / "signing-key.pem"
    key_file_create(path)
    previous = os.environ.get("SIGNING_KEY_FILE")
    os.environ["SIGNING_KEY_FILE"] = str(path)
    with override_settings(SIGNING_KEY_FILE=str(path)):
        yield path
    if previous is None:
        os.environ.pop("SIGNING_KEY_FILE", None)
    else:
        os.environ["SIGNING_KEY_FILE"] = previous


@pytest.fixture
def deferred(monkeypatch):
    """Every batch takes the large-batch path: stored now, indexed by the indexer (monitoring/indexing.py)."""
    monkeypatch.setattr(ingestion, "INDEX_IN_REQUEST_UP_TO", 0)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path_factory):
    settings.MEDIA_ROOT = tmp_path_factory.getbasetemp() / "media"


@cache
def breast_cancer_split():
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    X, y = X[order].astype(np.float32), y[order]
    return X[:350], y[:350], X[350:], y[350:]


@cache
def trained_model(C: float = 1.0) -> tuple[bytes, bytes]:
    """(onnx bytes, skops recipe) of a logistic regression on breast_cancer; cached across tests."""
    X_train, y_train, _, _ = breast_cancer_split()
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(X_train, y_train)
    return estimator_to_onnx(estimator, feature_names=FEATURES, class_labels=CLASSES), recipe_dump(estimator)


@pytest.fixture
def team(db):
    return services.team_get_or_create(name="Risk models")


def _member(team, username: str, role: str | None) -> User:
    user = User.objects.create_user(username=username, password="correct-horse-battery")
    if role is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user


@pytest.fixture
def approver(team):
    return _member(team, "alice", Role.APPROVER)


@pytest.fixture
def operator(team):
    return _member(team, "oscar", Role.OPERATOR)


@pytest.fixture
def viewer(team):
    return _member(team, "vera", Role.VIEWER)


@pytest.fixture
def outsider(db):
    other = services.team_get_or_create(name="Other team")
    return _member(other, "mallory", Role.APPROVER)


@pytest.fixture
def deployment(team, approver):
    """A deployment with an active v1 (real ONNX + recipe), a reference set and a labelled evaluation set."""
    onnx_bytes, recipe = trained_model()
    X_train, y_train, X_test, y_test = breast_cancer_split()
    return make_deployment(
        team=team, by=approver, name="Tumour classifier", slug="tumour", feature_names=FEATURES,
        class_labels=CLASSES, model=onnx_bytes, recipe=recipe, train=(X_train, y_train), holdout=(X_test, y_test),
        metric_thresholds={"accuracy": 0.9},
    )


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` process on the test database, fed through the real Redis broker.

    Tests that use it must be `transaction=True`, so the worker sees their committed rows.
    """
    base = tmp_path_factory.getbasetemp()
    env = worker_env(base)
    env.setdefault("DEBUG", "true")
    process, log = spawn_worker(base=base, log_name="celery-worker.log", args=["--queues=default,maintenance"], env=env)
    from dashboard.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited early; see {log.name}")
        if app.control.ping(timeout=1.0):
            break
    else:
        process.terminate()
        raise RuntimeError("celery worker did not answer a ping within 60 s")
    yield process
    process.terminate()
    process.wait(timeout=30)
    log.close()


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.2):
    """Poll until predicate() is truthy (for work done by another process), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
