"""Every page at a year's scale: server time per request (p50/p95) and queries per request, then a real browser
rendering the heaviest page.

Seeds 100 deployments, each with a year of hourly scheduled evaluations (the evaluation set and the 7-day labelled
production window; 1.75M runs, 6.1M metric points), four versions that served a quarter each and a candidate, daily
drift reports of 50 features (36,500 reports, 1.8M feature points), 20 alerts (2,000), 500 audit events, and 100,000
stored predictions (10M index rows in 36,500 daily batches, labelled but for the last two days). Batches hold their
timestamps, predictions and ids but no feature columns: no page reads those, and 2 GB of float32 would make the
seeding, not the pages, the subject.

Pages, as a superuser who sees all 100 deployments (the heaviest overview): the overview (its first page and its
second), a deployment page at every preset range (1, 7, 30, 90 days) and a custom year, the alerts list (unresolved and
all), the drift report list and one report, the approval page of a candidate, and the audit log. Timed through
Django's full stack in-process (the test client), --requests each after a warm-up. Baseline, in the same run: /healthz
(the floor under any page: middleware, URL resolver, session), and the deployment page's versions table read the old
way (every succeeded run's metrics, 17,520 JSON documents per deployment, to keep the latest per version and source).

Then chromium (Playwright, --headless --no-sandbox --disable-gpu) loads the heaviest page from a server on
127.0.0.1 and reports the time to its load event and until every chart is drawn.

Targets (issue 15): p95 <= 200 ms server time on every page, <= 2,000 points per chart trace, a query count that does
not grow with the number of deployments or rows on a page (tests/dashboard/test_page_queries.py asserts it).

Always runs on its own database (BENCH_PAGES_DATABASE_URL, default wk_bench_pages, created and migrated if missing)
and reuses the seed when it is complete (--reseed to start again): seeding takes a few minutes.

    .venv/bin/python bench/pages.py [--requests 30] [--reseed] [--no-browser]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["DATABASE_URL"] = os.environ.get("BENCH_PAGES_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wk_bench_pages")
os.environ["REDIS_URL"] = os.environ.get("BENCH_PAGES_REDIS_URL", "redis://127.0.0.1:6379/8")
os.environ.pop("CACHE_URL", None)
sys.path.insert(0, str(ROOT))
from docker.services import ensure_database

ensure_database(os.environ["DATABASE_URL"])

from _common import percentile, time_call  # (and Django set up from the environment)
from django.core.management import call_command

call_command("migrate", verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)

import numpy as np
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from sklearn.linear_model import LogisticRegression

from monitoring import drift, pgcopy, services
from monitoring.comparison import compare
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import (
    Deployment,
    DriftReport,
    EvaluationRun,
    ModelVersion,
    Prediction,
    ServingPeriod,
    Team,
    VersionComparisonResult,
)
from monitoring.runtime import inspect_model

PREFIX = "bench-pages-"
TEAM = "bench-pages"
ADMIN = "bench-pages-admin"
N_DEPLOYMENTS = 100
N_FEATURES = 50
CLASSES = ["low", "mid", "high"]
PREDICTIONS_PER_DEPLOYMENT = 100_000
ALERTS_PER_DEPLOYMENT = 20
AUDIT_PER_DEPLOYMENT = 500
DRIFT_VARIANTS = 8  # distinct real drift results, reused across days: computing 36,500 would time the drift code
DAY_US = 86_400_000_000
CHROMIUM = "/usr/bin/chromium"  # Debian's, as tests/browser uses


def deployments() -> list[Deployment]:
    return list(Deployment.objects.filter(slug__startswith=PREFIX).order_by("slug"))


def seeded() -> bool:
    ours = Deployment.objects.filter(slug__startswith=PREFIX)
    return (
        ours.count() == N_DEPLOYMENTS
        and Prediction.objects.filter(deployment__in=ours).count() == N_DEPLOYMENTS * PREDICTIONS_PER_DEPLOYMENT
    )


def _triggers_off(cursor) -> None:
    """For this transaction, no triggers: neither the foreign-key checks Postgres would run per row at commit
    (the seed is consistent by construction, and 25M deferred checks were most of its time) nor the audit log's
    append-only trigger (drop_seed deletes the bench's own events). The bench database only."""
    cursor.execute("SET LOCAL session_replication_role = replica")


# Built after the rows are in, not maintained row by row while 20M rows go in: a sorted build is several times
# faster than as many b-tree inserts in arbitrary order.
BULK_TABLES = ["monitoring_evaluationrun", "monitoring_metricpoint", "monitoring_driftreport",
               "monitoring_driftfeaturepoint", "monitoring_prediction", "monitoring_predictionbatch"]


def _drop_indexes(cursor) -> list[str]:
    """Drop the bulk tables' indexes that back no constraint; return their definitions to build them again."""
    cursor.execute(
        """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
           WHERE i.indrelid = ANY(%s::regclass[])
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        [BULK_TABLES],
    )
    found = cursor.fetchall()
    for name, _ in found:
        cursor.execute(f"DROP INDEX {name}")
    return [definition for _, definition in found]


def drop_seed() -> None:
    ids = [d.pk for d in deployments()]
    if not ids:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        _triggers_off(cursor)
        # Raw deletes: the ORM's cascade would load millions of rows into Python first.
        for table in ("prediction", "predictionbatch", "driftfeaturepoint", "metricpoint", "alert", "driftreport",
                      "versioncomparisonresult", "evaluationrun", "servingperiod", "auditevent", "modelversion"):
            cursor.execute(f"DELETE FROM monitoring_{table} WHERE deployment_id = ANY(%s)", [ids])
        cursor.execute("DELETE FROM monitoring_deployment WHERE id = ANY(%s)", [ids])


def model_bytes() -> bytes:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, N_FEATURES))
    y = np.asarray(CLASSES)[np.digitize(X[:, 0], [-0.5, 0.5])]
    estimator = LogisticRegression(max_iter=500).fit(X, y)
    return estimator_to_onnx(estimator, feature_names=[f"f{i}" for i in range(N_FEATURES)], class_labels=CLASSES)


def seed_deployments(end: datetime) -> None:
    data = model_bytes()
    sha256 = services.blob_put(data)
    signature = inspect_model(data, expected_features=N_FEATURES)
    team, _ = Team.objects.get_or_create(slug=TEAM, defaults={"name": "Bench pages"})
    start = end - timedelta(days=365)
    quarter = timedelta(days=365) / 4
    for i in range(N_DEPLOYMENTS):
        deployment = Deployment.objects.create(
            team=team, slug=f"{PREFIX}{i:03d}", name=f"Bench pages {i:03d}", description="a year of traffic",
            feature_names=[f"f{j}" for j in range(N_FEATURES)], class_labels=CLASSES,
            metric_thresholds={"accuracy": 0.85},
        )
        for number in range(1, 6):
            serving_from = start + quarter * (number - 1)
            status = {4: ModelVersion.Status.ACTIVE, 5: ModelVersion.Status.CANDIDATE}.get(number, ModelVersion.Status.RETIRED)
            version = ModelVersion.objects.create(
                deployment=deployment, number=number, status=status, sha256=sha256, size_bytes=len(data),
                input_name=signature.input_name, input_shape=signature.input_shape, output_names=signature.output_names,
                label_output=signature.label_output, probability_output=signature.probability_output,
                class_labels=signature.class_labels, opset=signature.opset, producer=signature.producer,
                created_at=serving_from, activated_at=serving_from if number <= 4 else None,
            )
            if number <= 4:
                ServingPeriod.objects.create(
                    deployment=deployment, version=version, started_at=serving_from,
                    ended_at=None if number == 4 else serving_from + quarter,
                )


def seed_evaluations(end: datetime) -> None:
    """Hourly runs while each version served, and their metric points, generated inside Postgres: nothing to
    format or send, and the fastest way to write 8M rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO monitoring_evaluationrun (source, window_start, window_end, status, n_rows, metrics, error,
                measured_at, created_at, finished_at, dataset_id, deployment_id, job_id, version_id)
            SELECT s.source,
                   CASE WHEN s.source = 'production' THEN h.at - interval '7 days' END,
                   CASE WHEN s.source = 'production' THEN h.at END,
                   'succeeded', 500,
                   jsonb_build_object('accuracy', a.acc, 'f1_macro', a.acc - 0.02, 'precision_macro', a.acc - 0.01,
                       'recall_macro', a.acc - 0.015, 'labels', '["low", "mid", "high"]'::jsonb,
                       'per_class', jsonb_build_object(
                           'precision', jsonb_build_array(a.acc, a.acc - 0.05, a.acc + 0.02),
                           'recall', jsonb_build_array(a.acc - 0.01, a.acc - 0.04, a.acc + 0.01),
                           'f1', jsonb_build_array(a.acc - 0.005, a.acc - 0.045, a.acc + 0.015),
                           'support', '[170, 160, 170]'::jsonb))
                   || CASE WHEN s.source = 'evaluation_set' THEN jsonb_build_object(
                          'latency_p50_ms', 0.010 + random() * 0.002, 'latency_p95_ms', 0.014 + random() * 0.004,
                          'latency_p99_ms', 0.020 + random() * 0.008) ELSE '{}'::jsonb END,
                   '', h.at, h.at, h.at, NULL, p.deployment_id, NULL, p.version_id
            FROM monitoring_servingperiod p
            JOIN monitoring_deployment d ON d.id = p.deployment_id AND d.slug LIKE %s
            CROSS JOIN LATERAL generate_series(p.started_at, coalesce(p.ended_at, %s) - interval '1 hour',
                                               interval '1 hour') AS h(at)
            CROSS JOIN (VALUES ('evaluation_set'), ('production')) AS s(source)
            -- A weekly wave, noise, and a dip below the 0.85 floor for a few hours every 40 days.
            CROSS JOIN LATERAL (SELECT 0.9 + 0.02 * sin(extract(epoch FROM h.at) / 604800.0 * 2 * pi())
                + (random() - 0.5) * 0.01
                - CASE WHEN (extract(epoch FROM h.at)::bigint / 3600) %% 960 < 5 THEN 0.1 ELSE 0 END AS acc) a
            """,
            [PREFIX + "%", end],
        )
        cursor.execute(
            """
            INSERT INTO monitoring_metricpoint (source, name, value, at, deployment_id, run_id, version_id, scheduled,
                window_length)
            SELECT r.source, m.key, (m.value #>> '{}')::float, r.measured_at, r.deployment_id, r.id, r.version_id,
                   r.job_id IS NULL, r.window_end - r.window_start
            FROM monitoring_evaluationrun r
            JOIN monitoring_deployment d ON d.id = r.deployment_id AND d.slug LIKE %s
            CROSS JOIN LATERAL jsonb_each(r.metrics) m
            WHERE jsonb_typeof(m.value) = 'number'
            """,
            [PREFIX + "%"],
        )


def drift_variants() -> list:
    """DRIFT_VARIANTS real drift results on 50 features: variant k shifts 3k of them."""
    rng = np.random.default_rng(7)
    names = [f"f{j}" for j in range(N_FEATURES)]
    reference = rng.normal(size=(5000, N_FEATURES)).astype(np.float32)
    profile = drift.ReferenceStats.from_bytes(drift.build_profile(reference, feature_names=names).to_bytes())
    results = []
    for k in range(DRIFT_VARIANTS):
        current = rng.normal(size=(2000, N_FEATURES))
        current[:, : 3 * k] += 0.4
        results.append(drift.feature_drift(profile, current))
    return results


def seed_drift(end: datetime) -> None:
    """A report per day per deployment; which variant a day gets is (deployment id × 7 + day number) mod 8, in
    both statements."""
    results = drift_variants()
    variant = f"((d.id * 7 + (extract(epoch FROM {{at}}) / 86400)::bigint) %% {DRIFT_VARIANTS})"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE bench_variant (variant int, features jsonb, n_drifted int, share float, "
                       "drifted bool, prediction_drift jsonb)")
        cursor.execute("CREATE TEMP TABLE bench_variant_point (variant int, feature text, test text, statistic float, "
                       "p_value float, threshold float, moved float, drifted bool)")
        for k, result in enumerate(results):
            cursor.execute(
                "INSERT INTO bench_variant VALUES (%s, %s, %s, %s, %s, %s)",
                [k, json.dumps(result.features_as_dicts()), result.n_drifted, result.share_drifted, result.drifted,
                 json.dumps(result.prediction_drift)],
            )
            cursor.executemany(
                "INSERT INTO bench_variant_point VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(k, f.feature, f.test, f.statistic, f.p_value, f.threshold, f.moved, f.drifted) for f in result.features],
            )
        cursor.execute(
            f"""
            INSERT INTO monitoring_driftreport (window_start, window_end, n_reference, n_current, features, n_drifted,
                share_drifted, drifted, prediction_drift, created_at, deployment_id, reference_dataset_id, correction,
                drift_share, multivariate, performance, profile_id)
            SELECT g.at - interval '1 day', g.at, 5000, 2000, v.features, v.n_drifted, v.share, v.drifted,
                   v.prediction_drift, g.at, d.id, NULL, 'bonferroni', 0.5, '{{}}', '{{}}', NULL
            FROM monitoring_deployment d
            CROSS JOIN generate_series(%s::timestamptz - interval '364 days', %s, interval '1 day') AS g(at)
            JOIN bench_variant v ON v.variant = {variant.format(at="g.at")}
            WHERE d.slug LIKE %s
            """,
            [end, end, PREFIX + "%"],
        )
        cursor.execute(
            f"""
            INSERT INTO monitoring_driftfeaturepoint (feature, at, test, statistic, p_value, threshold, moved, drifted,
                deployment_id, report_id)
            SELECT p.feature, r.window_end, p.test, p.statistic, p.p_value, p.threshold, p.moved, p.drifted, d.id, r.id
            FROM monitoring_driftreport r
            JOIN monitoring_deployment d ON d.id = r.deployment_id AND d.slug LIKE %s
            JOIN bench_variant_point p ON p.variant = {variant.format(at="r.window_end")}
            """,
            [PREFIX + "%"],
        )
        cursor.execute("DROP TABLE bench_variant, bench_variant_point")


def seed_alerts_and_audit(end: datetime, admin: User) -> None:
    kinds = ["data_drift", "metric_below_threshold", "prediction_drift", "concept_drift", "no_predictions",
             "labels_stopped", "batch_rejected", "check_failing"]
    with connection.cursor() as cursor:
        # Per deployment: 3 open, 2 acknowledged, the rest resolved, spread over the year; each its own key.
        cursor.execute(
            """
            INSERT INTO monitoring_alert (kind, severity, status, dedup_key, title, message, occurrences, created_at,
                last_seen_at, resolved_at, deployment_id, drift_report_id, evaluation_run_id, figures)
            SELECT (%s::text[])[1 + (i %% 8)],
                   CASE WHEN i %% 4 = 0 THEN 'critical' ELSE 'warning' END,
                   CASE WHEN i < 3 THEN 'open' WHEN i < 5 THEN 'acknowledged' ELSE 'resolved' END,
                   'bench-' || i, 'Bench alert ' || i || ' on ' || d.name, 'seeded by bench/pages.py', 1 + i,
                   %s::timestamptz - (i * 18 + 1) * interval '1 day', %s::timestamptz - (i * 18) * interval '1 day',
                   CASE WHEN i >= 5 THEN %s::timestamptz - (i * 18 - 1) * interval '1 day' END,
                   d.id, NULL, NULL, jsonb_build_object('metric', 'accuracy', 'value', 0.8, 'floor', 0.85)
            FROM monitoring_deployment d CROSS JOIN generate_series(0, %s - 1) AS i
            WHERE d.slug LIKE %s
            """,
            [kinds, end, end, end, ALERTS_PER_DEPLOYMENT, PREFIX + "%"],
        )
        cursor.execute(
            """
            INSERT INTO monitoring_auditevent (at, actor_label, action, object_type, object_id, before, after, comment,
                actor_id, deployment_id)
            SELECT %s::timestamptz - i * interval '17 hours', (ARRAY['alice', 'bob', 'worker', 'token:ab12cd34'])[1 + i %% 4],
                   (ARRAY['version.approve', 'job.queue', 'deployment.update', 'alert.acknowledge', 'token.create'])[1 + i %% 5],
                   'ModelVersion', v.id::text, '{"status": "candidate"}', '{"status": "active"}', 'looks good',
                   CASE WHEN i %% 4 = 0 THEN %s END, d.id
            FROM monitoring_deployment d
            JOIN monitoring_modelversion v ON v.deployment_id = d.id AND v.number = 4
            CROSS JOIN generate_series(0, %s - 1) AS i
            WHERE d.slug LIKE %s
            """,
            [end, admin.pk, AUDIT_PER_DEPLOYMENT, PREFIX + "%"],
        )


def _next_ids(cursor, table: str, n: int) -> int:
    """The first of n ids reserved for rows inserted with explicit ids."""
    cursor.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
    sequence = cursor.fetchone()[0]
    cursor.execute("SELECT nextval(%s)", [sequence])
    first = cursor.fetchone()[0]
    cursor.execute("SELECT setval(%s, %s)", [sequence, first + n])
    return first


LABELLED = np.dtype([
    ("n_fields", ">i2"), ("deployment_len", ">i4"), ("deployment_id", ">i8"), ("request_id_len", ">i4"),
    ("request_id", "S10"), ("timestamp_len", ">i4"), ("timestamp", ">i8"), ("batch_len", ">i4"), ("batch_id", ">i8"),
    ("row_len", ">i4"), ("row", ">i4"), ("label_len", ">i4"), ("label", ">i2"), ("labelled_at_len", ">i4"),
    ("labelled_at", ">i8"),
])
UNLABELLED = np.dtype([*LABELLED.descr[:11], ("label_len", ">i4"), ("labelled_at_len", ">i4")])


def _index_stream(dtype: np.dtype, **columns) -> pgcopy.PartsReader:
    records = np.zeros(len(columns["request_id"]), dtype=dtype)
    records["n_fields"] = 7
    records["deployment_len"], records["request_id_len"], records["timestamp_len"] = 8, 10, 8
    records["batch_len"], records["row_len"] = 8, 4
    for name, values in columns.items():
        records[name] = values
    if "label" in columns:
        records["label_len"], records["labelled_at_len"] = 2, 8
    else:
        records["label_len"], records["labelled_at_len"] = -1, -1
    return pgcopy.PartsReader([pgcopy.HEADER, records.tobytes(), pgcopy.TRAILER])


def seed_predictions(end: datetime) -> None:
    """PREDICTIONS_PER_DEPLOYMENT rows over the year per deployment, in daily batches, written with binary COPY
    from numpy: the batch rows (timestamps, predictions and ids as stored columns), then the index rows."""
    end_us = int(end.timestamp() * 1_000_000)
    start_us = end_us - 365 * DAY_US
    labelled_before = end_us - 2 * DAY_US
    rng = np.random.default_rng(3)
    columns_sql = ("id, idempotency_key, source, n_rows, n_features, t_min, t_max, timestamps_us, features, predicted, "
                   "probabilities, request_ids, result, received_at, deployment_id, version_id, state, indexed_at, "
                   "columns_sha256")
    with connection.cursor() as cursor:
        for deployment in deployments():
            versions = dict(deployment.serving_periods.values_list("started_at", "version_id"))
            starts = sorted(versions)
            start_edges = np.array([int(s.timestamp() * 1_000_000) for s in starts])
            ts = np.sort(rng.integers(start_us, end_us, PREDICTIONS_PER_DEPLOYMENT)).astype(np.int64)
            ids = np.char.add(b"r", np.char.zfill(np.arange(PREDICTIONS_PER_DEPLOYMENT).astype("S9"), 9))
            predicted = rng.integers(0, len(CLASSES), PREDICTIONS_PER_DEPLOYMENT).astype("<i2")
            day = (ts - start_us) // DAY_US
            bounds = np.flatnonzero(np.diff(day)) + 1
            edges = np.concatenate(([0], bounds, [len(ts)]))
            first_id = _next_ids(cursor, "monitoring_predictionbatch", len(edges) - 1)
            batch_ids = np.empty(len(ts), dtype=np.int64)
            rows = np.empty(len(ts), dtype=np.int32)
            batch_rows = []
            for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
                batch_id = first_id + b
                batch_ids[lo:hi], rows[lo:hi] = batch_id, np.arange(hi - lo)
                version_id = versions[starts[max(0, int(np.searchsorted(start_edges, ts[lo], side="right")) - 1)]]
                result = json.dumps({"received": int(hi - lo), "created": int(hi - lo)}).encode()
                batch_rows.append([
                    (batch_id, "int8"), (f"bench-{batch_id}", "text"), ("api", "text"), (int(hi - lo), "int4"),
                    (N_FEATURES, "int4"), (int(ts[lo]), "timestamptz"), (int(ts[hi - 1]), "timestamptz"),
                    (ts[lo:hi].astype("<i8").tobytes(), "bytea"), (b"", "bytea"), (predicted[lo:hi].tobytes(), "bytea"),
                    (None, "bytea"), (b"\n".join(ids[lo:hi].tolist()), "bytea"), (result, "jsonb"),
                    (int(ts[hi - 1]), "timestamptz"), (deployment.pk, "int8"), (version_id, "int8"), ("indexed", "text"),
                    (int(ts[hi - 1]), "timestamptz"), ("", "text"),
                ])
            cursor.copy_expert(f"COPY monitoring_predictionbatch ({columns_sql}) FROM STDIN (FORMAT binary)",
                               pgcopy.many_rows(batch_rows))
            index_columns = "deployment_id, request_id, timestamp, batch_id, row, label_index, labelled_at"
            labelled = ts < labelled_before
            for mask, dtype in ((labelled, LABELLED), (~labelled, UNLABELLED)):
                fields = {"deployment_id": deployment.pk, "request_id": ids[mask], "timestamp": ts[mask] - pgcopy.PG_EPOCH_US,
                          "batch_id": batch_ids[mask], "row": rows[mask]}
                if dtype is LABELLED:
                    truth = np.where(rng.random(mask.sum()) < 0.9, predicted[mask], rng.integers(0, len(CLASSES), mask.sum()))
                    fields |= {"label": truth, "labelled_at": ts[mask] + 3_600_000_000 - pgcopy.PG_EPOCH_US}
                cursor.copy_expert(f"COPY monitoring_prediction ({index_columns}) FROM STDIN (FORMAT binary)",
                                   _index_stream(dtype, **fields))


def refresh_comparisons() -> None:
    """The approval page of each deployment's candidate reads a stored comparison on the labelled production window;
    computed_at is set to now on every run so the page finds it fresh and queues nothing (workers compute it)."""
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 20_000)
    active = np.where(rng.random(len(y)) < 0.9, y, rng.integers(0, 3, len(y)))
    candidate = np.where(rng.random(len(y)) < 0.92, y, rng.integers(0, 3, len(y)))
    labels = np.asarray(CLASSES)
    stats = asdict(compare(labels[y], labels[active], labels[candidate], CLASSES))
    now = timezone.now()
    for deployment in deployments():
        days = deployment.evaluation_window_days
        versions = {v.number: v for v in deployment.versions.filter(number__in=[4, 5])}
        VersionComparisonResult.objects.update_or_create(
            active=versions[4], candidate=versions[5], window_key=f"production:{days}d",
            defaults={
                "deployment": deployment, "source": VersionComparisonResult.Source.PRODUCTION, "window_days": days,
                "description": f"Labelled production, last {days} days", "status": VersionComparisonResult.Status.SUCCEEDED,
                "n_rows": len(y), "statistics": stats, "queued_at": now, "started_at": now, "computed_at": now,
                "window_start": now - timedelta(days=days), "window_end": now,
            },
        )


def seed(admin: User) -> float:
    end = timezone.now().replace(minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    steps = [
        ("deployments and versions", lambda: seed_deployments(end)),
        ("evaluations (hourly runs, metric points)", lambda: seed_evaluations(end)),
        ("drift reports (daily, 50 features)", lambda: seed_drift(end)),
        ("alerts and audit events", lambda: seed_alerts_and_audit(end, admin)),
        ("predictions (batches, index rows)", lambda: seed_predictions(end)),
    ]
    # One transaction: an interrupted seed leaves nothing behind, and the next run starts again.
    with transaction.atomic():
        with connection.cursor() as cursor:
            _triggers_off(cursor)
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            indexes = _drop_indexes(cursor)
        for label, step in steps:
            began = time.perf_counter()
            step()
            print(f"  seeded {label} in {time.perf_counter() - began:.1f} s", flush=True)
        began = time.perf_counter()
        with connection.cursor() as cursor:
            for definition in indexes:
                cursor.execute(definition)
        print(f"  built {len(indexes)} indexes in {time.perf_counter() - began:.1f} s", flush=True)
        began = time.perf_counter()
    print(f"  committed in {time.perf_counter() - began:.1f} s", flush=True)
    with connection.cursor() as cursor:
        began = time.perf_counter()
        # As autovacuum would soon after a bulk load: statistics for the planner, and the visibility map that
        # lets the charts' covering index answer without visiting the table.
        cursor.execute("VACUUM ANALYZE")
        print(f"  VACUUM ANALYZE in {time.perf_counter() - began:.1f} s")
    return time.perf_counter() - started


def describe_seed() -> str:
    ours = Deployment.objects.filter(slug__startswith=PREFIX)
    counts = {
        "evaluation runs": EvaluationRun.objects.filter(deployment__in=ours).count(),
        "drift reports": DriftReport.objects.filter(deployment__in=ours).count(),
        "predictions": Prediction.objects.filter(deployment__in=ours).count(),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_metricpoint m JOIN monitoring_deployment d ON d.id = m.deployment_id "
                       "WHERE d.slug LIKE %s", [PREFIX + "%"])
        counts["metric points"] = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM monitoring_alert a JOIN monitoring_deployment d ON d.id = a.deployment_id "
                       "WHERE d.slug LIKE %s", [PREFIX + "%"])
        counts["alerts"] = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
    return f"{ours.count()} deployments, " + ", ".join(f"{n:,} {what}" for what, n in counts.items()) + f" ({size})"


def time_page(client: Client, path: str, n: int) -> tuple[float, float, int, int]:
    """(p50 ms, p95 ms, queries, response bytes) over n requests after two warm-ups."""
    for _ in range(2):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    return statistics.median(times), percentile(times, 0.95), len(queries), len(response.content)


def old_versions_with_metrics(deployment: Deployment) -> dict:
    """The versions table's read before issue 15: every succeeded run's metrics, the latest kept per pair."""
    latest = {}
    runs = EvaluationRun.objects.filter(deployment=deployment, status=EvaluationRun.Status.SUCCEEDED).order_by("measured_at")
    for version_id, source, metrics in runs.values_list("version_id", "source", "metrics"):
        latest[(version_id, source)] = metrics
    return latest


def max_trace_points(client: Client, path: str) -> int:
    """The most points any chart trace on the page carries (figures are JSON in <script> elements)."""
    import re

    html = client.get(path).content.decode()
    most = 0
    for blob in re.findall(r'<script[^>]*type="application/json"[^>]*>(.*?)</script>', html, flags=re.S):
        try:
            figure = json.loads(blob)
        except ValueError:
            continue
        for trace in figure.get("data", []) if isinstance(figure, dict) else []:
            most = max(most, len(trace.get("x") or []), len(trace.get("y") or []))
    return most


def browser_render(client: Client, path: str) -> str:
    """Chromium loads `path` from a threaded WSGI server on 127.0.0.1, logged in with the test client's session."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from django.core.wsgi import get_wsgi_application
    from playwright.sync_api import sync_playwright

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=Threaded, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}])
            page = context.new_page()
            results = []
            for _ in range(3):  # the first load also fetches and caches plotly.min.js
                start = time.perf_counter()
                page.goto(base + path, wait_until="load")
                loaded = (time.perf_counter() - start) * 1000
                n_charts = page.locator("[data-chart]").count()
                page.wait_for_function("document.body.dataset.chartsReady === 'true'", timeout=30_000)
                drawn = (time.perf_counter() - start) * 1000
                results.append((loaded, drawn, n_charts))
            browser.close()
        cold, warm = results[0], results[-1]
        return (f"chromium, {path}: {warm[2]} charts; load event {warm[0]:.0f} ms, every chart drawn {warm[1]:.0f} ms "
                f"(first visit, plotly.js not cached: {cold[0]:.0f} / {cold[1]:.0f} ms)")
    finally:
        server.shutdown()


def main() -> None:
    global N_DEPLOYMENTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--deployments", type=int, default=N_DEPLOYMENTS, help="fewer for a quick try of the script")
    args = parser.parse_args()
    N_DEPLOYMENTS = args.deployments
    admin, _ = User.objects.get_or_create(username=ADMIN, defaults={"is_superuser": True, "is_staff": True})
    if args.reseed or not seeded():
        drop_seed()
        print("seeding (a few minutes) ...", flush=True)
        print(f"seeded in {seed(admin):.0f} s")
    else:
        print("reusing the seed (--reseed to start again)")
    refresh_comparisons()
    print(describe_seed())

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(admin)
    first = deployments()[0]
    slug = first.slug
    report = first.drift_reports.order_by("-window_end").first()
    tz = timezone.get_current_timezone()
    year_end = timezone.localtime(timezone.now(), tz)
    year = f"?from={year_end - timedelta(days=365):%Y-%m-%dT%H:%M}&to={year_end:%Y-%m-%dT%H:%M}"
    deployment_url = reverse("deployment", args=[slug])
    pages = [
        ("overview", reverse("overview")),
        ("overview, page 2", reverse("overview") + "?page=2"),
        *[(f"deployment, {days} d", f"{deployment_url}?days={days}") for days in (1, 7, 30, 90)],
        ("deployment, custom 365 d", deployment_url + year),
        ("alerts, unresolved", reverse("alerts")),
        ("alerts, all", reverse("alerts") + "?show=all"),
        ("drift reports list", reverse("drift-reports", args=[slug])),
        ("drift report", reverse("drift-report", args=[slug, report.pk])),
        ("compare (approval page)", reverse("version-compare", args=[slug, 5])),
        ("audit log", reverse("audit", args=[slug])),
    ]
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores")
    floor_p50, floor_p95, _, _ = time_page(client, "/healthz", args.requests)
    print(f"\nbaseline /healthz: p50 {floor_p50:6.1f} ms, p95 {floor_p95:6.1f} ms")
    print(f"{'page':28s} {'p50 ms':>8s} {'p95 ms':>8s} {'queries':>8s} {'KB':>7s} {'max pts':>8s}  x /healthz p50")
    worst = ("", "", 0.0)
    for label, path in pages:
        p50, p95, queries, size = time_page(client, path, args.requests)
        points = max_trace_points(client, path)
        flag = "" if p95 <= 200 else "  over the 200 ms target"
        print(f"{label:28s} {p50:8.1f} {p95:8.1f} {queries:8d} {size / 1024:7.0f} {points:8d}  {p50 / floor_p50:6.0f}x{flag}",
              flush=True)
        if p95 > worst[2]:
            worst = (label, path, p95)

    old_p50, old_p95 = time_call(lambda: old_versions_with_metrics(first), max(5, args.requests // 3))
    from monitoring import selectors

    new_p50, new_p95 = time_call(lambda: selectors.versions_with_metrics(deployment=first), args.requests)
    print(f"\nversions table read, old (every run's metrics): p50 {old_p50:7.1f} ms, p95 {old_p95:7.1f} ms")
    print(f"versions table read, new (latest per version and source): p50 {new_p50:7.1f} ms, p95 {new_p95:7.1f} ms "
          f"(ratio {old_p50 / new_p50:.0f}x faster)")
    print(f"slowest page by p95: {worst[0]} ({worst[2]:.1f} ms); load average now "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    if args.no_browser:
        return
    if not Path(CHROMIUM).exists():
        print(f"browser: skipped, {CHROMIUM} is not installed (apt-get install chromium)")
        return
    print(browser_render(client, pages[6][1]))  # the custom year: the most points behind its charts


if __name__ == "__main__":
    main()
