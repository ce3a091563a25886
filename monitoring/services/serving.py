"""Serving: signing versions, telling the fleet a change happened, and remembering which instances poll.

A change of what a deployment serves (approval, rollback, a version signed) is announced with Postgres
NOTIFY inside the writing transaction, so listeners hear it only once it has committed; the web process's
one listener thread (dashboard/serving_watch.py) wakes the long polls waiting on that deployment.
"""

from __future__ import annotations

import atexit
import logging
import threading
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from monitoring import signing
from monitoring.models import Deployment, ModelVersion, ServingInstance

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "watchkeeper_serving"
# The payload of a revocation: every listener forgets the tokens it remembers (dashboard/serving_watch.py).
TOKENS_REVOKED = "tokens"


def serving_changed(*, deployment_id: int) -> None:
    """Tell every web process that this deployment's serving answer may have changed (delivered on commit)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, str(deployment_id)])


def serving_tokens_revoked() -> None:
    """Tell every web process to forget the tokens it has cached for the serving endpoints (delivered on commit,
    so a rolled-back revocation forgets nothing)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, TOKENS_REVOKED])


def version_sign(*, version: ModelVersion, key=None) -> bool:
    """Sign the version's sha256 with the instance key; False (and unsigned) when no key is configured."""
    try:
        key = key or signing.signing_key()
    except signing.SigningKeyMissing as exc:
        log.warning("v%s of %s left unsigned, so it will not be served: %s", version.number, version.deployment_id, exc)
        return False
    version.signature = signing.sign_digest(key, version.sha256)
    version.signing_key_id = signing.public_key_info(key.public_key()).key_id
    ModelVersion.objects.filter(pk=version.pk).update(signature=version.signature, signing_key_id=version.signing_key_id)
    if version.status == ModelVersion.Status.ACTIVE:
        serving_changed(deployment_id=version.deployment_id)
    return True


def versions_sign(*, resign: bool = False) -> int:
    """Sign every version not signed by the current key (all of them with `resign`, after a rotation).
    Raises signing.SigningKeyMissing when there is no key. Returns how many were signed."""
    key = signing.signing_key()
    key_id = signing.public_key_info(key.public_key()).key_id
    pending = ModelVersion.objects.all() if resign else ModelVersion.objects.exclude(signing_key_id=key_id)
    signed = 0
    for version in pending.iterator(chunk_size=500):
        with transaction.atomic():
            version_sign(version=version, key=key)
        signed += 1
    return signed


class _SeenBuffer:
    """The polls not yet written, (deployment id, instance id) -> (reported, told, when), written in one upsert by
    a background thread every SERVING_SEEN_FLUSH_SECONDS: a fleet's polls then cost the database one statement a
    second per web process, and a poll no query at all. A poll restarts the thread if it died; a failed write
    keeps its entries for the next one; the process's exit writes what is left (atexit)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[int, str], tuple[int | None, int | None, datetime]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.flush_errors = 0

    def record(self, key: tuple[int, str], reported: int | None, told: int | None, at: datetime) -> None:
        with self._lock:  # the newest poll of an instance wins
            if len(self._pending) < SEEN_PENDING_MAX or key in self._pending:
                self._pending[key] = (reported, told, at)
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="serving-seen-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(settings.SERVING_SEEN_FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # the database is away: the entries wait for the next round
                self.flush_errors += 1
                log.exception("serving: could not write %d instances' last seen; retrying", len(self._pending))
                connection.close()  # this thread's connection: the next round opens a new one
        connection.close()

    def flush(self) -> int:
        """Write every pending poll now; how many instances were written."""
        with self._lock:
            taken, self._pending = self._pending, {}
        if not taken:
            return 0
        try:
            entries = list(taken.items())
            for start in range(0, len(entries), SEEN_UPSERT_ROWS):
                chunk = entries[start:start + SEEN_UPSERT_ROWS]
                try:
                    _upsert_seen(chunk)
                except IntegrityError:  # a deployment deleted since its instance polled: its polls are moot
                    alive = set(Deployment.objects.filter(pk__in={key[0] for key, _ in chunk}).values_list("pk", flat=True))
                    _upsert_seen([entry for entry in chunk if entry[0][0] in alive])
                taken = dict(entries[start + SEEN_UPSERT_ROWS:])  # what a failure below would put back
        except Exception:
            with self._lock:  # back in the buffer, unless a newer poll of the same instance came meanwhile
                self._pending = taken | self._pending
            raise
        return len(entries)

    def stop(self) -> None:
        """End the thread (tests, before their database is dropped); what is pending stays pending."""
        thread = self._thread
        if thread is not None:
            self._stopping.set()
            thread.join(timeout=10)
            self._thread = None

    def forget(self) -> None:
        with self._lock:
            self._pending = {}


# 1,000 rows a statement: a fleet of any size is written in statements of bounded size and parameter count.
SEEN_UPSERT_ROWS = 1_000
# A bound on what waits while the database is away (instances, not polls): past it, new instances wait for the
# next poll after the database is back.
SEEN_PENDING_MAX = 100_000
_seen = _SeenBuffer()


@atexit.register
def _flush_seen_at_exit() -> None:
    try:
        _seen.flush()
    except Exception:  # the database is away as the process ends: at most a second of last seen is lost
        log.exception("serving: last seen of the final second not written")


def serving_instance_seen(*, deployment: Deployment, instance_id: str, reported: int | None, told: int | None) -> None:
    """Record that an instance polled. Outside a transaction the row is written by the buffer's thread within
    SERVING_SEEN_FLUSH_SECONDS (an upsert keeping first_seen); inside one (whose rows that thread could not see
    yet) at once."""
    at = timezone.now()
    if connection.in_atomic_block:
        _upsert_seen([((deployment.pk, instance_id), (reported, told, at))])
    else:
        _seen.record((deployment.pk, instance_id), reported, told, at)


def _upsert_seen(entries: list[tuple[tuple[int, str], tuple[int | None, int | None, datetime]]]) -> None:
    """One INSERT … ON CONFLICT DO UPDATE for these instances, keeping each one's first_seen."""
    ServingInstance.objects.bulk_create(
        [ServingInstance(deployment_id=deployment_id, instance_id=instance_id, version_reported=reported,
                         version_told=told, first_seen=at, last_seen=at)
         for (deployment_id, instance_id), (reported, told, at) in entries],
        update_conflicts=True, unique_fields=["deployment", "instance_id"],
        update_fields=["version_reported", "version_told", "last_seen"],
    )


def serving_seen_flush() -> int:
    """Write the buffered polls now (tests; a shutdown hook); how many instances were written."""
    return _seen.flush()


def _forget_seen() -> None:
    """For tests: drop the polls not yet written."""
    _seen.forget()
