"""Serving: signing versions, telling the fleet a change happened, and remembering which instances poll.

A change of what a deployment serves (approval, rollback, a version signed) is announced with Postgres
NOTIFY inside the writing transaction, so listeners hear it only once it has committed; the web process's
one listener thread (dashboard/serving_watch.py) wakes the long polls waiting on that deployment.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connection, transaction
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


# (deployment id, instance id) -> (reported, told, monotonic time of the last write): a poll that changes nothing
# writes at most once per SERVING_SEEN_WRITE_SECONDS. Per process; a second process writes its own upserts.
_seen_written: dict[tuple[int, str], tuple[int | None, int | None, float]] = {}
_seen_lock = threading.Lock()


def serving_instance_seen(*, deployment: Deployment, instance_id: str, reported: int | None, told: int | None) -> bool:
    """Record that an instance polled; True if a row was written (an upsert keeping first_seen)."""
    key = (deployment.pk, instance_id)
    now = time.monotonic()
    with _seen_lock:
        previous = _seen_written.get(key)
        if previous and previous[:2] == (reported, told) and now - previous[2] < settings.SERVING_SEEN_WRITE_SECONDS:
            return False
        _seen_written[key] = (reported, told, now)
        if len(_seen_written) > 100_000:  # a bound, not a cache policy: forgetting only costs one extra write
            _seen_written.clear()
    at = timezone.now()
    ServingInstance.objects.bulk_create(
        [ServingInstance(deployment=deployment, instance_id=instance_id, version_reported=reported, version_told=told,
                         first_seen=at, last_seen=at)],
        update_conflicts=True, unique_fields=["deployment", "instance_id"],
        update_fields=["version_reported", "version_told", "last_seen"],
    )
    return True


def _forget_seen() -> None:
    """For tests: the next poll of every instance writes."""
    with _seen_lock:
        _seen_written.clear()
