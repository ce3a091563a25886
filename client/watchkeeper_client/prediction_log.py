"""Asynchronous prediction logging: the caller's thread appends a chunk (one predict call) to a bounded buffer;
one sender thread turns chunks into JSON batches and posts them, each with its own Idempotency-Key, retried
with backoff until stored, refused, or abandoned at close.

The buffer counts a row from the moment it is appended until its batch is stored, so during an outage it fills
up and further rows are dropped and counted (`dropped_rows`) rather than growing memory without bound.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from watchkeeper_client.errors import Refused, Unreachable
from watchkeeper_client.transport import Transport

try:  # optional (the `fast` extra): writes float32 arrays in their shortest form, in C
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]


log = logging.getLogger("watchkeeper_client")

# The server takes at most MAX_PREDICTION_BATCH (10,000) rows per JSON batch, and indexes up to 10,000 in the
# request (so labels can join at once).
MAX_BATCH_ROWS = 10_000


@dataclass
class LogStats:
    sent_rows: int = 0  # stored by the server (a replayed answer counts once)
    dropped_rows: int = 0  # not buffered: the buffer was full (a long outage)
    rejected_rows: int = 0  # refused by the server (4xx): logged, not retried
    unsent_rows: int = 0  # still buffered when close() gave up
    batches_sent: int = 0
    retries: int = 0


class _Chunk:
    """One predict call's rows, as the caller's thread left them (converted to JSON only in the sender)."""

    __slots__ = ("X", "ids", "labels", "probabilities", "time", "version")

    def __init__(self, version: int | None, X: np.ndarray, labels: np.ndarray, probabilities: np.ndarray | None,
                 ids: Any, moment: float):
        self.version = version
        self.X = X
        self.labels = labels
        self.probabilities = probabilities
        self.ids = ids
        self.time = moment

    def __len__(self) -> int:
        return len(self.X)

    def split(self, n: int) -> tuple[_Chunk, _Chunk]:
        def cut(value: Any, part: slice) -> Any:
            return None if value is None else value[part]

        head, tail = slice(None, n), slice(n, None)
        return (
            _Chunk(self.version, self.X[head], self.labels[head], cut(self.probabilities, head), cut(self.ids, head), self.time),
            _Chunk(self.version, self.X[tail], self.labels[tail], cut(self.probabilities, tail), cut(self.ids, tail), self.time),
        )


class PredictionLog:
    def __init__(
        self, transport: Transport, slug: str, *, instance: str, capacity_rows: int = 200_000,
        flush_rows: int = 5_000, flush_interval: float = 1.0, max_batch_rows: int = MAX_BATCH_ROWS,
        max_backoff: float = 30.0, senders: int = 2,
    ):
        if not 0 < flush_rows <= capacity_rows:
            raise ValueError("flush_rows must be positive and at most capacity_rows")
        self._transport = transport
        self._path = f"/api/deployments/{slug}/predictions"
        self.capacity_rows = capacity_rows
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self.max_batch_rows = min(max_batch_rows, MAX_BATCH_ROWS)
        self.max_backoff = max_backoff
        self.stats = LogStats()
        self._stats_lock = threading.Lock()
        self._chunks: deque[_Chunk | tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._buffered = 0  # rows appended and not yet stored, refused or abandoned
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._closed = False  # the flag add() reads: an attribute is cheaper than Event.is_set()
        self._give_up_at: float | None = None
        self._interrupt = threading.Event()
        # Generated ids: unique per process start (the random part) and per row (the counter).
        self._id_prefix = f"{instance}-{uuid.uuid4().hex[:12]}-"
        self._next_id = itertools.count()
        self._take_lock = threading.Lock()
        # Two senders by default: one batch is encoded while the other is in flight, and the server's workers
        # each take one; a single sender waits out every round trip.
        self._threads = [
            threading.Thread(target=self._run, name=f"watchkeeper-log-{slug}-{i}", daemon=True) for i in range(senders)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def buffered_rows(self) -> int:
        return self._buffered

    # ------------------------------------------------------------ the caller's thread: keep it short

    def add(self, version: int | None, X: np.ndarray, labels: np.ndarray, probabilities: np.ndarray | None,
            ids: Any, moment: float) -> bool:
        n = len(X)
        lock = self._lock
        lock.acquire()
        if self._buffered + n > self.capacity_rows or self._closed:
            self.stats.dropped_rows += n
            lock.release()
            return False
        self._buffered += n
        lock.release()
        # X is the caller's array, which it may reuse after predict returns: its bytes are kept (the cheapest
        # copy); the outputs are ours already. A tuple, not an object: nothing in this path that allocates more.
        self._chunks.append((version, X.tobytes(), labels, probabilities, ids, moment))
        if self._buffered >= self.flush_rows:
            self._wake.set()
        return True

    # ------------------------------------------------------------ the sender thread

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._chunks:  # everything buffered now: a flush by size or by time
                with self._take_lock:
                    batch = self._take()
                if batch:
                    self._send(batch)
            if self._closing.is_set() and not self._chunks:
                return

    def _take(self) -> list[_Chunk]:
        """Chunks for one batch: at most max_batch_rows rows, all made by the same version."""
        taken: list[_Chunk] = []
        n = 0
        while self._chunks and n < self.max_batch_rows:
            chunk = self._chunk(self._chunks.popleft())
            if taken and chunk.version != taken[0].version:
                self._chunks.appendleft(chunk)
                break
            room = self.max_batch_rows - n
            if len(chunk) > room:
                chunk, rest = chunk.split(room)
                self._chunks.appendleft(rest)
            taken.append(chunk)
            n += len(chunk)
        return taken

    @staticmethod
    def _chunk(item: _Chunk | tuple[Any, ...]) -> _Chunk:
        """A chunk as add() left it (a tuple, X as bytes) or as _take put back (a split _Chunk)."""
        if isinstance(item, _Chunk):
            return item
        version, data, labels, probabilities, ids, moment = item
        X = np.frombuffer(data, dtype=np.float32).reshape(len(labels), -1)
        return _Chunk(version, X, labels, probabilities, ids, moment)

    def _encode(self, chunks: list[_Chunk]) -> bytes:
        """The JSON batch. Each chunk is encoded on its own: orjson holds the GIL while it runs, so the caller's
        thread waits at most one chunk's encoding (a 1,000-row chunk: a few ms), not a whole batch's."""
        head = b'{"version":%d,"predictions":[' % chunks[0].version if chunks[0].version is not None else b'{"predictions":['
        parts = [self._encode_rows(chunk)[1:-1] for chunk in chunks]
        return head + b",".join(part for part in parts if part) + b"]}"

    def _encode_rows(self, chunk: _Chunk) -> bytes:
        n = len(chunk)
        stamp = datetime.fromtimestamp(chunk.time, UTC).isoformat()
        ids = (
            [str(i) for i in chunk.ids] if chunk.ids is not None
            else [f"{self._id_prefix}{next(self._next_id)}" for _ in range(n)]
        )
        labels = np.asarray(chunk.labels).astype(str).tolist()
        X = np.asarray(chunk.X).reshape(n, -1)
        P = chunk.probabilities
        if orjson is not None:  # rows stay numpy views: float32 written as float32, without a Python float each
            features, probabilities = list(X), (None if P is None else list(P))
        else:
            features = X.astype(np.float64).tolist()
            probabilities = None if P is None else np.asarray(P, dtype=np.float64).tolist()
        rows: list[dict[str, Any]]
        if probabilities is None:
            rows = [{"id": i, "timestamp": stamp, "features": f, "predicted_label": label}
                    for i, f, label in zip(ids, features, labels)]
        else:
            rows = [{"id": i, "timestamp": stamp, "features": f, "predicted_label": label, "probabilities": p}
                    for i, f, label, p in zip(ids, features, labels, probabilities)]
        if orjson is not None:
            return orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY)
        return json.dumps(rows, separators=(",", ":")).encode()

    def _send(self, chunks: list[_Chunk]) -> None:
        n = sum(len(chunk) for chunk in chunks)
        try:
            body = self._encode(chunks)
        except Exception:  # a row the client cannot even encode: never block the rows behind it
            log.exception("could not encode %d predictions; they are not logged", n)
            self._settle(n, "rejected_rows")
            return
        key = str(uuid.uuid4())  # the same key on every retry: the server stores the batch once
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        delay = 0.25
        while True:
            try:
                self._transport.request("POST", self._path, body=body, headers=headers, ok=(200, 201))
            except Refused as exc:
                log.error("Watchkeeper refused a batch of %d predictions (%s); they are not logged", n, exc)
                self._settle(n, "rejected_rows")
                return
            except Unreachable as exc:
                if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                    log.warning("closing: %d predictions could not be sent (%s)", n, exc)
                    self._settle(n, "unsent_rows")
                    return
                with self._stats_lock:
                    self.stats.retries += 1
                wait = min(delay, self.max_backoff) * random.uniform(0.5, 1.0)
                log.warning("could not send %d predictions (%s); retrying in %.1f s", n, exc, wait)
                if self._give_up_at is not None:
                    wait = max(0.0, min(wait, self._give_up_at - time.monotonic()))
                if self._interrupt.wait(wait):  # close() cut the wait short, once: retry now, then to the deadline
                    self._interrupt.clear()
                delay *= 2
            else:
                with self._stats_lock:
                    self.stats.batches_sent += 1
                self._settle(n, "sent_rows")
                return

    def _settle(self, n: int, outcome: str) -> None:
        with self._lock:
            self._buffered -= n
            setattr(self.stats, outcome, getattr(self.stats, outcome) + n)

    # ------------------------------------------------------------ shutting down

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything buffered now is stored (or refused); True if it was within `timeout`."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self._buffered > 0 and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        return self._buffered == 0

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking rows, send what is buffered, and give up on what is still unsent after `timeout` s."""
        if not any(thread.is_alive() for thread in self._threads):
            return
        with self._lock:
            self._closed = True
            self._closing.set()
        self._give_up_at = time.monotonic() + timeout
        self._wake.set()
        self._interrupt.set()
        for thread in self._threads:
            thread.join(max(0.0, self._give_up_at + 5 - time.monotonic()))
        if self._buffered:
            log.warning("closed with %d predictions not sent", self._buffered)
