"""A worker SIGKILLed in the middle of a stage transition: a real Celery worker process runs the guard check,
advances the rollout's stage inside its transaction and is held there (the test locks the audit table the
transition writes next), then is killed with -9. Nothing of the half-done transition survives, the rollout is
in its old stage, and the next check, by another worker, advances it once: one audit entry, one event. An
approver advancing meanwhile waits on the dead transition's row lock, then wins: still one transition."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator

import psycopg2
import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from monitoring import background, services
from monitoring.models import AuditEvent, Notification, Rollout, RolloutCheck
from monitoring.services.serving import _forget_seen
from tests.builders import spawn_worker, worker_env
from tests.conftest import FEATURES, trained_model, wait_for
from tests.dashboard.api.helpers import bearer, post_json
from workers.tasks import check_rollouts_task

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Its own queue: the session's worker (tests/conftest.py) must not take these checks.
QUEUE = "rollout-sigkill-test"
STAGES = [{"share": 0.1, "min_minutes": 0, "min_predictions": 50},
          {"share": 0.5, "min_minutes": 0, "min_predictions": 50},
          {"share": 1.0}]
GUARDS = {"class_shift": {"min_rows": 50}}


def _raw_connection(*, autocommit: bool = False):
    """A connection of the test's own, outside Django's: one holds a lock while the worker waits on it, another
    (autocommit: pg_stat_activity is a snapshot for the length of a transaction) watches the worker wait."""
    settings = connection.settings_dict
    raw = psycopg2.connect(dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
                           port=settings["PORT"], password=settings["PASSWORD"] or None)
    raw.autocommit = autocommit
    return raw


def _log(deployment, token: str, version: int, prefix: str, n: int) -> None:
    now = timezone.now().isoformat()
    rows = [{"id": f"{prefix}-{i}", "timestamp": now, "features": dict.fromkeys(FEATURES, 1.0),
             "predicted_label": str(i % 2)} for i in range(n)]
    response = post_json(Client(), f"/api/v1/deployments/{deployment.slug}/predictions",
                         {"predictions": rows, "version": version}, **bearer(token))
    assert response.status_code in (200, 201), response.content


def _worker(base, name: str):
    env = worker_env(base, DEBUG="true")
    process, log = spawn_worker(base=base, log_name=f"{name}.log", env=env, own_session=True,
                                args=[f"--queues={QUEUE}", "-n", f"{name}@%h"])
    from dashboard.celery import app

    wait_for(lambda: app.control.ping(timeout=1.0, destination=[f"{name}@{os.uname().nodename}"]), timeout=60)
    return process, log


def _blocked_transition(raw) -> int | None:
    """The pid of the backend waiting to write the transition's audit entry, if one is."""
    with raw.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock' AND query ILIKE %s",
            [f'%INSERT INTO "{AuditEvent._meta.db_table}"%'],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _backend_alive(raw, pid: int) -> bool:
    with raw.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


@pytest.fixture
def processes() -> Iterator[list]:
    started: list = []
    yield started
    for process, log in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        log.close()


@pytest.fixture
def staged(deployment, operator, approver, monkeypatch, settings) -> Rollout:
    """A rollout at stage 1 whose traffic passes it, and a webhook channel subscribed to rollout.advanced."""
    settings.ALERT_ALLOW_PRIVATE_URLS = True  # the channel is only there to count events; nothing listens on it
    # This process queues nothing for the session's worker: the event deliveries stay as rows to count.
    monkeypatch.setattr(background, "enqueue", lambda *args, **kwargs: None)
    _forget_seen()
    token = services.token_create(deployment=deployment, name="fleet", by=operator)[1]
    channel, _ = services.channel_create(team=deployment.team, kind="webhook", name="cd", by=approver,
                                         target="http://127.0.0.1:18399/never-called")
    services.channel_events_set(channel=channel, events=["rollout.advanced"], by=approver)
    candidate = services.version_register(deployment=deployment, data=trained_model(C=0.8)[0], by=operator)
    services.rollout_plan_set(deployment=deployment, by=approver, stages=STAGES, guards=GUARDS)
    rollout = services.rollout_start(version=candidate, by=approver, comment="canary")
    _log(deployment, token, 1, "active", 400)
    _log(deployment, token, 2, "canary", 100)  # the same classes: stage 1 passes
    return rollout


def _kill_mid_transition(rollout: Rollout, tmp_path, processes: list, *,
                         meanwhile: Callable[[psycopg2.extensions.connection], None] | None = None) -> None:
    """A worker's check held inside the transition it decided on, then SIGKILLed; `meanwhile` runs while it is
    held. Returns once the dead worker's database session is gone."""
    raw, watcher = _raw_connection(), _raw_connection(autocommit=True)
    try:
        with raw.cursor() as cursor:  # held until the worker is dead: its transition cannot write its audit entry
            cursor.execute(f'LOCK TABLE "{AuditEvent._meta.db_table}" IN SHARE ROW EXCLUSIVE MODE')
        processes.append(_worker(tmp_path, "doomed"))
        check_rollouts_task.apply_async(queue=QUEUE)
        backend = wait_for(lambda: _blocked_transition(watcher), timeout=60)
        # Inside the transition: its conditional update has moved the stage (uncommitted) and holds the row.
        with connection.cursor() as cursor, pytest.raises(OperationalError, match="could not obtain lock"):
            cursor.execute(f"SELECT stage FROM {Rollout._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT", [rollout.pk])
        if meanwhile is not None:
            meanwhile(watcher)

        os.killpg(processes[-1][0].pid, signal.SIGKILL)
        processes[-1][0].wait(timeout=30)
        raw.commit()  # the lock goes; the orphaned backend finds its client gone and rolls back
        wait_for(lambda: not _backend_alive(watcher, backend), timeout=30)
    finally:
        raw.close()
        watcher.close()


def _next_checks(rollout: Rollout, tmp_path, processes: list, *, until_stage: int) -> None:
    """Another worker's checks until the rollout is at `until_stage`, then one more (which must not move it)."""
    processes.append(_worker(tmp_path, "survivor"))

    def at_stage() -> bool:
        # The beat's next checks, run here (the first ones may find the dead worker's Redis lock, 20 s TTL).
        check_rollouts_task.apply_async(queue=QUEUE)
        checked = Rollout.objects.filter(pk=rollout.pk, last_checked_at__isnull=False).values_list("stage", flat=True)
        return list(checked) == [until_stage]

    wait_for(at_stage, timeout=90, interval=3.0)
    checked_at = Rollout.objects.get(pk=rollout.pk).last_checked_at
    check_rollouts_task.apply_async(queue=QUEUE)  # the next stage has no traffic of its own yet: it waits
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).last_checked_at != checked_at, timeout=60)


def test_a_worker_killed_mid_transition_leaves_the_stage_whole_and_the_next_check_advances_it_once(
    staged, tmp_path, processes
):
    rollout = staged
    _kill_mid_transition(rollout, tmp_path, processes)

    rollout.refresh_from_db()
    assert (rollout.state, rollout.stage, rollout.last_checked_at) == ("running", 0, None)
    assert not RolloutCheck.objects.exists()  # the check's rows went with its transition
    assert not AuditEvent.objects.filter(action="rollout.advance").exists()
    assert not Notification.objects.filter(event="rollout.advanced").exists()

    _next_checks(rollout, tmp_path, processes, until_stage=1)

    rollout.refresh_from_db()
    assert (rollout.state, rollout.stage) == ("running", 1)
    assert AuditEvent.objects.filter(action="rollout.advance", actor_label="worker").count() == 1
    assert Notification.objects.filter(event="rollout.advanced").count() == 1
    assert set(RolloutCheck.objects.values_list("stage", flat=True)) == {0, 1}


def test_an_approver_advancing_while_the_killed_worker_held_the_transition_makes_the_only_transition(
    staged, approver, tmp_path, processes
):
    rollout = staged
    outcome: dict[str, object] = {}

    def approver_advances() -> None:
        try:
            outcome["rollout"] = services.rollout_advance(rollout=rollout, from_stage=0, by=approver, reason="now")
        except services.Conflict as exc:
            outcome["conflict"] = exc
        finally:
            connection.close()

    contender = threading.Thread(target=approver_advances)

    def meanwhile(watcher) -> None:
        contender.start()
        # The approver's conditional update waits on the row the dying transition holds.
        with watcher.cursor() as cursor:
            wait_for(lambda: cursor.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE %s",
                [f'%UPDATE "{Rollout._meta.db_table}"%'],
            ) or cursor.fetchone(), timeout=30)

    _kill_mid_transition(rollout, tmp_path, processes, meanwhile=meanwhile)
    contender.join(timeout=30)

    assert "conflict" not in outcome and not contender.is_alive()
    rollout.refresh_from_db()
    assert (rollout.state, rollout.stage) == ("running", 1)  # the approver's, made once the dead one had gone
    _next_checks(rollout, tmp_path, processes, until_stage=1)

    rollout.refresh_from_db()
    assert (rollout.state, rollout.stage) == ("running", 1)
    advances = AuditEvent.objects.filter(action="rollout.advance")
    assert [a.actor_id for a in advances] == [approver.pk]  # one, and not the worker's
    assert Notification.objects.filter(event="rollout.advanced").count() == 1
