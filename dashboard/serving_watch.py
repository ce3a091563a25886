"""One listener per web process for serving changes, so a long poll waits on a condition, not on the database.

`services.serving_changed` sends Postgres NOTIFY on the `watchkeeper_serving` channel when a deployment's answer
may have changed (delivered at commit). A daemon thread here holds the one LISTEN connection of this process and
bumps a per-deployment generation; each waiting request sleeps on a threading.Condition until its deployment's
generation moves or its time is up. 200 waiting polls cost 200 idle threads and one database connection.

On SQLite (the embedded mode), which has no NOTIFY, the same thread bumps every generation once a second, so
the waiters re-read the database at that pace: the 1 s promise still holds for the small installs it serves.

A token revocation (`services.serving_tokens_revoked`, payload TOKENS_REVOKED) bumps the epoch: the serving
endpoints' token cache is keyed by it (dashboard/api/serving.py), and waiting polls re-check their token.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time

from django.db import connections

from monitoring.services.serving import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

# How long the listener blocks in select() between checks that it should still run; a lost connection is retried
# after RECONNECT_SECONDS, and every waiter re-reads then (a notification may have been missed meanwhile).
SELECT_SECONDS = 5.0
RECONNECT_SECONDS = 1.0


class ServingWatch:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generations: dict[int, int] = {}
        self._epoch = 0  # bumped for everyone: a reconnect, or a poll tick on SQLite
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()

    @property
    def epoch(self) -> int:
        """Moves when every cached answer must be re-read: a reconnect, a token revocation (or a tick on SQLite)."""
        self.start()
        return self._epoch

    def generation(self, deployment_id: int) -> tuple[int, int]:
        """Take this before reading the state, then wait with it: a change in between is not missed."""
        self.start()
        with self._condition:
            return self._epoch, self._generations.get(deployment_id, 0)

    def wait(self, deployment_id: int, since: tuple[int, int], timeout: float) -> bool:
        """Block until the deployment's generation differs from `since`, or `timeout` seconds; True if it did."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while (self._epoch, self._generations.get(deployment_id, 0)) == since:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True

    def bump(self, deployment_id: int | None) -> None:
        with self._condition:
            if deployment_id is None:
                self._epoch += 1
            else:
                self._generations[deployment_id] = self._generations.get(deployment_id, 0) + 1
            self._condition.notify_all()

    def stop(self) -> None:
        """End the listener thread and close its connection (tests, before their database is dropped)."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake_w.send(b"x")
        thread.join(timeout=10)
        self._thread = None
        self._stopping.clear()
        while select.select([self._wake_r], [], [], 0)[0]:
            self._wake_r.recv(64)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="serving-watch", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        if connections["default"].vendor != "postgresql":
            self.connected.set()
            while not self._stopping.wait(1.0):
                self.bump(None)
            return
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception:  # any failure of the connection: log, wake everyone to re-read, reconnect
                log.exception("serving watch: LISTEN connection lost; reconnecting")
            self.connected.clear()
            self.bump(None)
            self._stopping.wait(RECONNECT_SECONDS)

    def _listen(self) -> None:
        import psycopg2  # type: ignore[import-untyped]
        import psycopg2.extensions  # type: ignore[import-untyped]

        # Its own connection, outside Django's per-thread ones: it lives as long as the process.
        params = connections["default"].get_connection_params()
        conn = psycopg2.connect(**params)
        try:
            conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.connected.set()
            self.bump(None)  # anything committed before LISTEN took effect is re-read by the waiters
            while not self._stopping.is_set():
                readable, _, _ = select.select([conn, self._wake_r], [], [], SELECT_SECONDS)
                if conn not in readable:
                    continue
                conn.poll()
                while conn.notifies:
                    note = conn.notifies.pop(0)
                    try:
                        self.bump(int(note.payload))
                    except ValueError:  # TOKENS_REVOKED, or anything else: everyone re-reads, cached tokens too
                        self.bump(None)
        finally:
            conn.close()


watch = ServingWatch()
