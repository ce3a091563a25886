"""A worker process SIGKILLed in the middle of an evaluation, a drift check and an indexing run: each is run
again (retry_on_worker_lost, workers/tasks.py) and finishes exactly once, with nothing of the killed attempt
kept but a "running" evaluation row, closed as failed. The notification delivery case is
tests/workers/test_delivery_sigkill.py (the sweep's lease takes a killed delivery back).

To kill the worker at a known point, the test holds a lock on the table the work writes last (metric points,
drift reports, the prediction index): the worker blocks there, mid-task, with its deployment lock held and its
earlier writes done; the test sees it waiting in pg_stat_activity, kills the pool process (as the OOM killer
would), and lets go of the table. Postgres rolls back the dead process's open transaction."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg2
import pytest
import urllib3

from tests.faults.conftest import seed, stored
from tests.faults.stack import Stack
from tests.faults.test_redis_down import PENDING_ROWS, _csv

pytestmark = pytest.mark.faults

@pytest.fixture
def model_deployments(stack: Stack) -> dict[str, int]:
    return stack.seeded_models


@pytest.fixture
def worker(stack: Stack) -> None:
    stack.worker_ready()  # the session's worker, respawned pool process and all


def _send(stack: Stack, task: str, *args: int) -> None:
    stack.send_task(task, *args)


def _pool_children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def _kill_while_blocked_on(stack: Stack, table: str, start) -> None:
    """Lock `table`, start the work, wait until a worker's query waits for that lock, SIGKILL the pool process."""
    holder = psycopg2.connect(stack.postgres.url())
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            start()
            deadline = time.monotonic() + 90
            while True:
                # pg_stat_activity is read once per transaction unless its snapshot is cleared.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
                if cursor.fetchone()[0]:
                    break
                assert time.monotonic() < deadline, f"no worker waited on {table} within 90 s"
                time.sleep(0.2)
        (child,) = _pool_children(stack.processes["worker"].pid)
        os.kill(child, signal.SIGKILL)
        while Path(f"/proc/{child}").exists():
            time.sleep(0.1)
    finally:
        holder.rollback()
        holder.close()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_an_evaluation_whose_worker_is_killed_is_run_again_and_finishes_once(stack, model_deployments, worker):
    deployment_id = model_deployments["kill-evaluate"]
    # Runs from before this test (tests/faults/test_redis_down.py's beat evaluates this deployment) are not its own.
    (before,) = stack.sql("SELECT coalesce(max(id), 0) FROM monitoring_evaluationrun")[0]

    _kill_while_blocked_on(stack, "monitoring_metricpoint",
                           lambda: _send(stack, "evaluate_deployment_task", deployment_id))

    def runs() -> list[tuple[str, str]]:
        return stack.sql("SELECT status, error FROM monitoring_evaluationrun WHERE deployment_id = %s AND id > %s "
                         "ORDER BY id", deployment_id, before)

    # The retry comes once the dead worker's deployment lock has run out (LOCK_TTL_SECONDS, 20 s).
    _wait(lambda: [status for status, _ in runs()] == ["failed", "succeeded"], 90, "the evaluation run again")
    (_, error), _ = runs()
    assert "worker was lost" in error  # the killed attempt's row, closed by the retry
    (points_runs,) = stack.sql("SELECT count(DISTINCT run_id) FROM monitoring_metricpoint WHERE deployment_id = %s "
                               "AND run_id > %s", deployment_id, before)[0]
    assert points_runs == 1  # the killed attempt's metric points were never committed
    time.sleep(3)
    assert len(runs()) == 2  # and no third run


def test_a_drift_check_whose_worker_is_killed_is_run_again_and_stores_one_report(stack, model_deployments, worker):
    deployment_id = model_deployments["kill-drift"]
    (before,) = stack.sql("SELECT coalesce(max(id), 0) FROM monitoring_driftreport")[0]

    _kill_while_blocked_on(stack, "monitoring_driftreport", lambda: _send(stack, "check_drift_task", deployment_id))

    def reports() -> int:
        return stack.sql("SELECT count(*) FROM monitoring_driftreport WHERE deployment_id = %s AND id > %s",
                         deployment_id, before)[0][0]

    _wait(lambda: reports() == 1, 90, "the drift check run again")
    time.sleep(3)
    assert reports() == 1


def test_an_indexing_run_whose_worker_is_killed_is_run_again_and_indexes_every_row_once(stack, web, worker):
    seeded = seed(stack, "kill-index")

    def upload() -> None:
        response = urllib3.request(
            "POST", f"{web}/api/v1/deployments/{seeded.slug}/predictions/upload", body=_csv(PENDING_ROWS, "kill"),
            headers={"Authorization": f"Bearer {seeded.token}", "Content-Type": "text/csv"}, retries=False,
            timeout=urllib3.Timeout(connect=5, read=60),
        )
        assert response.status == 202, response.data  # stored; the indexer is queued

    _kill_while_blocked_on(stack, "monitoring_prediction", upload)

    _wait(lambda: stack.sql("SELECT state FROM monitoring_predictionbatch WHERE deployment_id = %s",
                            seeded.deployment_id) == [("indexed",)], 90, "the batch indexed")
    assert stored(stack, seeded) == (PENDING_ROWS,) * 3
