"""GET /metrics scrape time as the fleet grows: the per-deployment gauges are read in a fixed number of queries
(monitoring/selectors/fleet_metrics.py), so 10x the deployments must not cost 10x the scrape.

Seeds --small deployments, times --scrapes scrapes (server-side, through Django's handler, as Prometheus would
get them), grows the fleet to --large and times again. Each deployment has an active version, a month of hourly
evaluations on two sources, a month of daily drift reports, five open alerts, one stored batch of 200
predictions and 100 labels. Reported: p50 and p95 scrape ms and the queries per scrape at each size, and the
ratio large/small (the baseline, measured in the same run, is the small fleet). At the large size, the latest
evaluations are also read the old way (a window function ranking every run) beside the new read (the newest run
per active version and source, one index probe each), with their ratio.

Runs on its own database (BENCH_METRICS_DATABASE_URL, default wk_bench_metrics), dropped and made anew each run.

    .venv/bin/python bench/metrics.py [--small 10] [--large 100] [--scrapes 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["DATABASE_URL"] = os.environ.get("BENCH_METRICS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wk_bench_metrics")
os.environ["METRICS_TOKEN"] = "bench-metrics-token-0123456789"
os.environ.setdefault("TASKS_IN_PROCESS", "true")  # nothing to enqueue: the seed writes rows directly

sys.path.insert(0, str(ROOT))
from urllib.parse import urlparse

import psycopg2

from docker.services import ensure_database

# A fresh database each run: the audit log is append-only, so the last run's deployments cannot be deleted.
_url = urlparse(os.environ["DATABASE_URL"])
_admin = psycopg2.connect(host=_url.hostname, port=_url.port or 5432, user=_url.username, password=_url.password, dbname="postgres")
_admin.autocommit = True
with _admin.cursor() as _cursor:
    _cursor.execute(f'DROP DATABASE IF EXISTS "{_url.path.lstrip("/")}"')
_admin.close()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
import django

django.setup()
ensure_database(os.environ["DATABASE_URL"])
from django.core.management import call_command

call_command("migrate", verbosity=0)

import numpy as np
from _common import time_call
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from sklearn.linear_model import LogisticRegression

from monitoring import services
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import Alert, Deployment, DriftReport, EvaluationRun, ModelVersion
from monitoring.selectors import fleet_metrics

FEATURES = [f"f{i}" for i in range(8)]
CLASSES = ["0", "1"]


def _template_version(team, user) -> ModelVersion:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, len(FEATURES))).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    model = estimator_to_onnx(LogisticRegression().fit(X, y), feature_names=FEATURES, class_labels=CLASSES)
    first = services.deployment_create(team=team, name="Fleet 0", slug="fleet-0", feature_names=FEATURES,
                                       class_labels=CLASSES, by=user)
    return services.version_register(deployment=first, data=model, by=user)


def _grow(team, user, template: ModelVersion, upto: int) -> None:
    now = timezone.now()
    have = Deployment.objects.count()
    for i in range(have, upto):
        if i == 0:
            deployment = template.deployment
        else:
            deployment = services.deployment_create(team=team, name=f"Fleet {i}", slug=f"fleet-{i}",
                                                    feature_names=FEATURES, class_labels=CLASSES, by=user)
            version = ModelVersion.objects.get(pk=template.pk)
            version.pk, version.deployment, version.number = None, deployment, 1
            version.save()
        version = deployment.versions.get(number=1)
        EvaluationRun.objects.bulk_create([
            EvaluationRun(deployment=deployment, version=version, source=source, status="succeeded",
                          metrics={"accuracy": 0.9, "f1_macro": 0.88}, measured_at=now - timedelta(hours=h))
            for source in ("production", "evaluation_set") for h in range(24 * 30)
        ])
        DriftReport.objects.bulk_create([
            DriftReport(deployment=deployment, window_start=now - timedelta(days=d + 1), window_end=now - timedelta(days=d),
                        n_reference=1000, n_current=1000, share_drifted=0.1)
            for d in range(30)
        ])
        for k in range(5):
            services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key=f"k{k}", title="Drift")
        rows = [{"id": f"{i}-{r}", "timestamp": now.isoformat(), "features": [0.1] * len(FEATURES), "predicted_label": "1"}
                for r in range(200)]
        services.predictions_ingest(deployment=deployment, rows=rows)
        services.labels_ingest(deployment=deployment, rows=[{"id": f"{i}-{r}", "label": "1"} for r in range(100)])


def _time_scrapes(n: int) -> tuple[float, float, int]:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {os.environ['METRICS_TOKEN']}", HTTP_HOST="127.0.0.1")
    assert client.get("/metrics").status_code == 200  # warm: the first request builds the URLconf
    times = []
    for _ in range(n):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get("/metrics")
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], len(queries.captured_queries)


def old_latest_evaluations() -> list[dict]:
    """The read before issue 15's fix: every successful run of the active versions ranked per deployment and source."""
    ranked = (
        EvaluationRun.objects.filter(status=EvaluationRun.Status.SUCCEEDED, version__status=ModelVersion.Status.ACTIVE)
        .annotate(rank=Window(RowNumber(), partition_by=[F("deployment_id"), F("source")], order_by=F("measured_at").desc()))
        .filter(rank=1)
        .order_by()
    )
    return list(ranked.values("deployment_id", "source", accuracy=F("metrics__accuracy"), f1_macro=F("metrics__f1_macro")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()

    user, _ = User.objects.get_or_create(username="bench-metrics")
    team = services.team_get_or_create(name="Bench metrics")
    template = _template_version(team, user)
    figures = {}
    for size in (args.small, args.large):
        started = time.perf_counter()
        _grow(team, user, template, size)
        with connection.cursor() as cursor:
            # As autovacuum would within a minute of a bulk load. Without it the planner still thinks a version
            # has two runs, and reads all of them to sort (a bitmap scan) instead of taking the newest from the
            # index: the new read was slower than the window function (likely the 1.6 s of the 2026-12-03 try).
            cursor.execute("ANALYZE")
        print(f"seeded {size} deployments in {time.perf_counter() - started:.0f} s", flush=True)
        figures[size] = _time_scrapes(args.scrapes)
    for size, (p50, p95, queries) in figures.items():
        print(f"/metrics with {size:>4} deployments: p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  {queries} queries per scrape")
    small, large = figures[args.small], figures[args.large]
    print(f"ratio {args.large}/{args.small} deployments: p50 x{large[0] / small[0]:.2f}, queries {small[2]} -> {large[2]}")
    old = sorted((r["deployment_id"], r["source"], r["accuracy"], r["f1_macro"]) for r in old_latest_evaluations())
    new = sorted((r["deployment_id"], r["source"], r["accuracy"], r["f1_macro"]) for r in fleet_metrics._latest_evaluations())
    assert old == new, "the two reads disagree"
    old_p50, old_p95 = time_call(old_latest_evaluations, args.scrapes)
    new_p50, new_p95 = time_call(fleet_metrics._latest_evaluations, args.scrapes)
    print(f"latest evaluations at {args.large} deployments, old (window over every run): p50 {old_p50:.1f} ms, "
          f"p95 {old_p95:.1f} ms; new (newest run per series): p50 {new_p50:.1f} ms, p95 {new_p95:.1f} ms "
          f"(x{old_p50 / new_p50:.0f} faster)")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
