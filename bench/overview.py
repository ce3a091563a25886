"""The overview page with many deployments, and the deployment page with a preset and a custom range: server
time per request (Django's full stack, the test client) and queries per request.

Each of N deployments has an active version (a small real ONNX model), a week of hourly scheduled evaluations
(accuracy on the evaluation set and on a 7-day production window) and an open alert.

Baseline, measured in the same run: the overview's old read, deployment_summary once per deployment (six
queries each), against deployment_overview (a fixed number of queries, sparklines included).

    .venv/bin/python bench/overview.py [--deployments N] [--requests N]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import timedelta

from _common import drop_deployment, make_deployment
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from sklearn.linear_model import LogisticRegression

from monitoring import selectors, services
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import Alert, EvaluationRun, MetricPoint, ModelVersion, ServingPeriod
from monitoring.runtime import inspect_model

warnings.filterwarnings("ignore", "No directory at", UserWarning)

PREFIX = "bench-overview-"
N_FEATURES = 8
CLASSES = ["0", "1"]
ADMIN = "bench-overview-admin"


def model_bytes() -> bytes:
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, N_FEATURES))
    estimator = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    return estimator_to_onnx(estimator, feature_names=[f"f{i}" for i in range(N_FEATURES)], class_labels=CLASSES)


def seed(slug: str, data: bytes, sha256: str) -> None:
    deployment = make_deployment(slug, n_features=N_FEATURES, classes=CLASSES)
    signature = inspect_model(data, expected_features=N_FEATURES)
    started = timezone.now() - timedelta(days=30)
    version = ModelVersion.objects.create(
        deployment=deployment, number=1, status=ModelVersion.Status.ACTIVE, sha256=sha256, size_bytes=len(data),
        input_name=signature.input_name, input_shape=signature.input_shape, output_names=signature.output_names,
        label_output=signature.label_output, probability_output=signature.probability_output,
        class_labels=signature.class_labels, opset=signature.opset, producer=signature.producer, activated_at=started,
    )
    ServingPeriod.objects.create(deployment=deployment, version=version, started_at=started)
    now = timezone.now()
    points = []
    for hour in range(7 * 24, 0, -1):
        at = now - timedelta(hours=hour)
        for source, window in ((EvaluationRun.Source.EVALUATION_SET, None), (EvaluationRun.Source.PRODUCTION, timedelta(days=7))):
            run = EvaluationRun.objects.create(
                deployment=deployment, version=version, source=source, measured_at=at, n_rows=500,
                status=EvaluationRun.Status.SUCCEEDED, metrics={"accuracy": 0.9, "f1_macro": 0.89},
                window_start=at - window if window else None, window_end=at if window else None,
            )
            points += [
                MetricPoint(deployment=deployment, version=version, run=run, source=source, name=name, value=value, at=at)
                for name, value in (("accuracy", 0.9 + (hour % 10) / 1000), ("f1_macro", 0.89), ("latency_p50_ms", 0.01))
            ]
    MetricPoint.objects.bulk_create(points)
    # Directly, not through alert_raise: its audit event is append-only and the bench could not drop the deployment.
    Alert.objects.create(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="Drift")


def timed(client: Client, path: str, n: int) -> tuple[float, int]:
    client.get(path)  # warm-up
    times = []
    for _ in range(n):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(times), len(queries)


def timed_call(run, n: int) -> tuple[float, int]:
    run()
    times = []
    for _ in range(n):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=40)
    parser.add_argument("--requests", type=int, default=15)
    args = parser.parse_args()
    data = model_bytes()
    sha256 = services.blob_put(data)
    slugs = [f"{PREFIX}{i:03d}" for i in range(args.deployments)]
    admin, _ = User.objects.get_or_create(username=ADMIN, defaults={"is_superuser": True, "is_staff": True})
    try:
        for slug in slugs:
            seed(slug, data, sha256)
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(admin)
        mine = list(selectors.deployments_visible_to(user=admin).filter(slug__startswith=PREFIX))
        print(f"{len(mine)} deployments, each a week of hourly evaluations (2 sources), an open alert")

        old_ms, old_q = timed_call(lambda: [selectors.deployment_summary(deployment=d) for d in mine], args.requests)
        new_ms, new_q = timed_call(lambda: selectors.deployment_overview(user=admin), args.requests)
        print(f"overview read, old (deployment_summary × N): {old_ms:8.1f} ms, {old_q} queries")
        print(f"overview read, new (deployment_overview):   {new_ms:8.1f} ms, {new_q} queries "
              f"(sparklines included; ratio {old_ms / new_ms:.1f}× faster)")
        page_ms, page_q = timed(client, reverse("overview"), args.requests)
        print(f"GET /                            median {page_ms:7.1f} ms, {page_q} queries")

        url = reverse("deployment", args=[slugs[0]])
        end = timezone.localtime()
        custom = f"?from={end - timedelta(days=3):%Y-%m-%dT%H:%M}&to={end:%Y-%m-%dT%H:%M}"
        for label, query in (("preset 30 d", "?days=30"), ("custom 3 d", custom), ("preset 7 d, refresh 1m", "?days=7&refresh=1m")):
            ms, q = timed(client, url + query, args.requests)
            print(f"GET deployment page, {label:22s} median {ms:7.1f} ms, {q} queries")
    finally:
        for slug in slugs:
            drop_deployment(slug)
        User.objects.filter(username=ADMIN).delete()


if __name__ == "__main__":
    main()
