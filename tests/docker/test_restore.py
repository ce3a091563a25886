"""The restore drill of docs/operations.md, run for real: a deployment with history is backed up with the real
pg_dump and a copy of MEDIA_ROOT (in that order), restored into a fresh database and a fresh media folder, and
the dashboard pointed at the copy shows the same figures and model bytes; verify_storage finds it whole."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from monitoring import services
from monitoring.models import DriftReport, EvaluationRun
from tests.builders import worker_env
from tests.conftest import ROOT
from workers.drift_check import reference_profile

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the drill restores a Postgres dump")


def _pg_binary(name: str) -> str:
    """The client of the server's major version (a pg_dump older than the server refuses to dump it)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        major = int(cursor.fetchone()[0]) // 10000
    candidate = Path(f"/usr/lib/postgresql/{major}/bin/{name}")
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (looked in {candidate.parent} and PATH)")
    return found


def _server_args(database: str) -> list[str]:
    db = connection.settings_dict
    return ["-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"], "-d", database]


def _psql(sql: str) -> None:
    subprocess.run([_pg_binary("psql"), *_server_args("postgres"), "-v", "ON_ERROR_STOP=1", "-qc", sql],
                   check=True, capture_output=True)


def _seed(deployment, approver) -> None:
    """A week of history: predictions (one batch a file in the media store), labels, evaluations with an alert,
    a drift report, a retention setting."""
    now = timezone.now().replace(microsecond=0)
    for day, n in ((6, 40), (0, 30)):
        at = now - timedelta(days=day, minutes=5)
        rows = [{"id": f"d{day}-{i}", "timestamp": (at + timedelta(seconds=i)).isoformat(),
                 "features": [0.1 * (i % 7)] * deployment.n_features, "predicted_label": str(i % 2)} for i in range(n)]
        services.predictions_ingest(deployment=deployment, rows=rows)
    services.labels_ingest(deployment=deployment, rows=[{"id": f"d0-{i}", "label": str(i % 2)} for i in range(20)])
    for hours, accuracy in ((48, 0.93), (24, 0.91), (1, 0.85)):
        run = EvaluationRun.objects.create(
            deployment=deployment, version=deployment.active_version(), source=EvaluationRun.Source.PRODUCTION,
            measured_at=now - timedelta(hours=hours), window_start=now - timedelta(days=7, hours=hours),
            window_end=now - timedelta(hours=hours),
        )
        services.evaluation_complete(run=run, metrics={"accuracy": accuracy, "f1_macro": accuracy - 0.02, "n_rows": 20})
    DriftReport.objects.create(deployment=deployment, window_start=now - timedelta(days=1), window_end=now,
                               n_reference=350, n_current=30, share_drifted=0.1)
    services.deployment_retention_configure(deployment=deployment, predictions_days=120, reports_days=400, by=approver)
    # The reference profile, built here rather than left to whether a worker of the session is alive to build it
    # (the deployment's commit queues it): one file more either way, and the same one (keyed by dataset and model).
    reference_profile(deployment, deployment.active_version())


def _probe(env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.docker.restore_probe", "alice", "tumour"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _verify_storage(env: dict[str, str]) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "manage.py", "verify_storage", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])["summary"]


@pytest.mark.django_db(transaction=True)  # pg_dump sees committed rows only
def test_a_dump_and_a_media_copy_restore_to_a_dashboard_showing_the_same_figures(deployment, approver, tmp_path, settings):
    settings.BATCH_COLUMNS_IN_MEDIA_FROM_BYTES = 5_000  # the 40-row batch keeps its columns in a file, the 30-row one not
    _seed(deployment, approver)
    source_db = connection.settings_dict["NAME"]
    env = worker_env(tmp_path, DEBUG="true", MEDIA_ROOT=str(settings.MEDIA_ROOT))
    before = _probe(env)

    # The backup: the database first, then the files (docs/operations.md says why in that order).
    dump, media_copy = tmp_path / "watchkeeper.dump", tmp_path / "media-backup"
    subprocess.run([_pg_binary("pg_dump"), *_server_args(source_db), "--format=custom", "--file", str(dump)],
                   check=True, capture_output=True)
    shutil.copytree(settings.MEDIA_ROOT, media_copy)

    # The restore: a fresh database and a fresh media folder, nothing shared with the original.
    restored_db, restored_media = f"wk_restore_{uuid.uuid4().hex[:8]}", tmp_path / "media-restored"
    _psql(f'CREATE DATABASE "{restored_db}"')
    try:
        subprocess.run([_pg_binary("pg_restore"), *_server_args(restored_db), "--exit-on-error", "--no-owner", str(dump)],
                       check=True, capture_output=True)
        shutil.copytree(media_copy, restored_media)
        db = connection.settings_dict
        restored_env = worker_env(
            tmp_path, DEBUG="true", MEDIA_ROOT=str(restored_media),
            DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{restored_db}",
        )
        after = _probe(restored_env)
        code, summary = _verify_storage(restored_env)
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{restored_db}" WITH (FORCE)')

    assert after == before
    # The figures are the seeded ones, not two empty pages that agree.
    assert set(before["status"].values()) == {200}
    assert before["deployment"][:2] == ["v1", "0.850"] and "30" in before["deployment"]
    assert before["overview"]["numbers"][:3] == ["0.850", "0.830", "30"]
    assert before["retention"]["predictions"].startswith("kept 120 days · 70 rows in 2 batches")
    assert before["model_sha256"] == deployment.active_version().sha256
    # Whole: every named file is there and hashes to its name (model, recipe, two datasets, the batch's file, the
    # reference profile).
    # The media folder is the session's, shared with the session's worker (which writes into it), so it also holds
    # files of earlier tests whose rows were flushed: orphans, which a restore may have and the check reports
    # without failing (docs/operations.md). Nothing may be missing or damaged.
    findings = {kind: n for kind, n in summary["findings"].items() if kind != "orphan"}
    assert code == 0 and summary["ok"] and summary["named_files"] == 6 and findings == {}
