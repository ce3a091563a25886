"""Postgres restarted during ingestion: the API answers 503 with Retry-After while it is down, the serving
client (client/watchkeeper_client) retries each batch with its Idempotency-Key, and once the database is back
every row is stored exactly once. The private stack's real Postgres is stopped and started by the test."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from watchkeeper_client.prediction_log import PredictionLog
from watchkeeper_client.transport import Transport

from tests.conftest import wait_for
from tests.faults.conftest import post_batch, rows, seed, stored

pytestmark = pytest.mark.faults

# ~6 s of traffic, with the database down for 4 s of it: long enough for gunicorn's pooled connections to die
# and the client to back off several times.
CHUNKS, ROWS_PER_CHUNK, CHUNK_EVERY_S = 120, 25, 0.05
DOWN_S = 4.0


def test_a_postgres_restart_mid_ingestion_is_a_503_the_client_retries_and_nothing_is_lost_or_doubled(stack, web):
    url = web
    seeded = seed(stack, "pg-restart")
    assert post_batch(url, seeded, rows(3, prefix="warm")).status == 201  # the workers hold live connections now

    log = PredictionLog(Transport(url, seeded.token, timeout=5.0), seeded.slug, instance="faults", flush_rows=50,
                        flush_interval=0.05, max_backoff=1.0)

    def traffic() -> None:
        for i in range(CHUNKS):
            X = np.full((ROWS_PER_CHUNK, 3), float(i), np.float32)
            labels = np.array(["no", "yes"] * (ROWS_PER_CHUNK // 2) + ["no"] * (ROWS_PER_CHUNK % 2))
            assert log.add(None, X, labels, None, None, time.time())
            time.sleep(CHUNK_EVERY_S)

    sender = threading.Thread(target=traffic)
    sender.start()
    time.sleep(1.0)
    stack.postgres.stop("fast")  # cuts every open connection, rolling back what they had not committed
    try:
        down = post_batch(url, seeded, rows(2, prefix="while-down"), key="while-down")
        assert down.status == 503
        assert down.headers["Content-Type"] == "application/problem+json"
        assert down.headers["Retry-After"] == "5"
        assert down.json()["status"] == 503 and "Retry the same request" in down.json()["detail"]
        time.sleep(DOWN_S)
    finally:
        stack.postgres.start()
    sender.join()
    assert log.flush(timeout=60)
    log.close()

    total = CHUNKS * ROWS_PER_CHUNK
    assert log.stats.retries > 0  # the outage was seen by the client, not slept through
    assert (log.stats.sent_rows, log.stats.rejected_rows, log.stats.dropped_rows, log.stats.unsent_rows) == (total, 0, 0, 0)
    # Every row once, none lost, none doubled: in the batches now, and in the label index once the stack's worker
    # has indexed them (the client asks for that, Prefer: respond-async).
    assert stored(stack, seeded)[0] == total + 3
    wait_for(lambda: stored(stack, seeded)[1] >= total + 3, timeout=60)
    assert stored(stack, seeded) == (total + 3, total + 3, total + 3)
    # The refused request stored nothing; resent with its key, it is stored once.
    assert post_batch(url, seeded, rows(2, prefix="while-down"), key="while-down").status == 201
    assert stored(stack, seeded)[0] == total + 5


def test_a_prediction_timestamped_past_the_tolerance_is_refused_with_nothing_stored(stack, web):
    from datetime import UTC, datetime, timedelta

    url = web
    seeded = seed(stack, "skew")
    now = datetime.now(UTC)
    ahead = rows(3, prefix="ahead", at=now - timedelta(minutes=1))
    ahead[1]["timestamp"] = (now + timedelta(hours=1)).isoformat()  # a client clock an hour fast

    refused = post_batch(url, seeded, ahead)

    assert refused.status == 422
    body = refused.json()
    assert "in the future" in body["detail"] and "at most 300 s ahead" in body["detail"]
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(1, "timestamp")]
    assert stored(stack, seeded) == (0, 0, 0)
    # Within the tolerance (ordinary NTP drift) a batch is stored as sent.
    assert post_batch(url, seeded, rows(3, prefix="near", at=now + timedelta(seconds=60))).status == 201
    assert stored(stack, seeded) == (3, 3, 3)
