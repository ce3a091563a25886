"""Asynchronous prediction logging: the caller's thread appends a chunk (one predict call) to a bounded buffer;
sender threads turn chunks into batches and post them, each with its own Idempotency-Key, retried with backoff
until stored, refused, or abandoned at close.

A batch goes as the server's columnar format (an uncompressed .npz of the arrays: a few memcpys, no number
formatted; the server reads it without parsing one either), or as JSON rows with `columnar=False` (a server
older than the format).

The buffer counts a row from the moment it is appended until its batch is stored, so during an outage it fills
up and further rows are dropped and counted (`dropped_rows`) rather than growing memory without bound.
"""

from __future__ import annotations

import io
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


class PredictionLog:
    def __init__(
        self, transport: Transport, slug: str, *, instance: str, capacity_rows: int = 200_000,
        flush_rows: int = 5_000, flush_interval: float = 1.0, max_batch_rows: int = MAX_BATCH_ROWS,
        max_backoff: float = 30.0, senders: int = 2, columnar: bool = True, index_in_request: bool = False,
    ):
        if not 0 < flush_rows <= capacity_rows:
            raise ValueError("flush_rows must be positive and at most capacity_rows")
        self._transport = transport
        self._path = f"/api/v1/deployments/{slug}/predictions"
        self.columnar = columnar
        self.index_in_request = index_in_request
        self.capacity_rows = capacity_rows
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self.max_batch_rows = min(max_batch_rows, MAX_BATCH_ROWS)
        self.max_backoff = max_backoff
        self.stats = LogStats()
        self._stats_lock = threading.Lock()
        # (ring position, rows, version, has probabilities, ids, time) per predict call, in ring order.
        self._chunks: deque[tuple[Any, ...]] = deque()
        # The rows themselves wait in rings allocated (and touched) once: predict() copies into memory that is
        # already mapped, so it neither allocates nor takes a page fault, however long the outage. A row's slot is
        # free once a sender has copied it out; `_buffered` (rows not yet stored) bounds the rings.
        self._ring_X: np.ndarray | None = None
        self._ring_labels: np.ndarray | None = None
        self._ring_P: np.ndarray | None = None
        self._head = 0  # where the next row goes (modulo capacity_rows)
        self._lock = threading.Lock()
        self._buffered = 0  # rows appended and not yet stored, refused or abandoned
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._closed = False  # the flag add() reads: an attribute is cheaper than Event.is_set()
        self._give_up_at: float | None = None
        self._interrupt = threading.Event()
        # Generated ids: unique per process start (the random part) and per row (the counter).
        self._id_prefix = f"{instance}-{uuid.uuid4().hex[:12]}-"
        self._next_id = 0
        self._ids_lock = threading.Lock()
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
        try:
            if self._buffered + n > self.capacity_rows or self._closed:
                self.stats.dropped_rows += n
                return False
            ring_X, ring_labels = self._ring_X, self._ring_labels
            if ring_X is None or ring_labels is None or ring_X.shape[1] != X.shape[1] or (
                ring_labels.dtype != labels.dtype and ring_labels.dtype.kind != "O") or (
                probabilities is not None and (self._ring_P is None or self._ring_P.shape[1] != probabilities.shape[1])
            ):
                ring_X, ring_labels = self._reshape_rings(X, labels, probabilities)
            head = self._head
            i = head % self.capacity_rows
            j = i + n
            if j <= self.capacity_rows:
                ring_X[i:j] = X
                ring_labels[i:j] = labels
                if probabilities is not None:
                    self._ring_P[i:j] = probabilities  # type: ignore[index]
            else:  # wraps around
                k = self.capacity_rows - i
                ring_X[i:], ring_X[: n - k] = X[:k], X[k:]
                ring_labels[i:], ring_labels[: n - k] = labels[:k], labels[k:]
                if probabilities is not None:
                    self._ring_P[i:], self._ring_P[: n - k] = probabilities[:k], probabilities[k:]  # type: ignore[index]
            self._head = head + n
            self._buffered += n
            self._chunks.append((head, n, version, probabilities is not None, ids, moment))
        finally:
            lock.release()
        if self._buffered >= self.flush_rows:
            self._wake.set()
        return True

    def prepare(self, *, n_features: int, n_classes: int, label_dtype: Any) -> None:
        """Allocate and touch the rings now (at start), not in the first predict."""
        with self._lock:
            self._allocate(n_features, n_classes, np.dtype(label_dtype))

    def _allocate(self, n_features: int, n_classes: int, label_dtype: np.dtype[Any]) -> None:
        n = self.capacity_rows
        self._ring_X = np.zeros((n, n_features), np.float32)
        # Text labels go in an object ring: a fixed-width one would cut a longer label short.
        textual = label_dtype.kind in "OUS"
        self._ring_labels = np.full(n, "", dtype=object) if textual else np.zeros(n, label_dtype)
        self._ring_P = np.zeros((n, n_classes), np.float32) if n_classes else None
        for ring in (self._ring_X, self._ring_P):
            if ring is not None:
                ring.fill(1.0)  # np.zeros maps pages lazily; writing each one now keeps the faults out of predict

    def _reshape_rings(self, X: np.ndarray, labels: np.ndarray, probabilities: np.ndarray | None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Rings that fit these rows (a first add without prepare(), or a swap to a model whose outputs differ):
        allocated anew while holding the lock, carrying over the rows still waiting in the old ones."""
        waiting = [(start, n) for start, n, *_ in self._chunks]
        old = (self._ring_X, self._ring_labels, self._ring_P)
        n_classes = probabilities.shape[1] if probabilities is not None else (0 if old[2] is None else old[2].shape[1])
        same_labels = old[1] is None or old[1].dtype == labels.dtype
        self._allocate(X.shape[1], n_classes, labels.dtype if same_labels else np.dtype(object))
        if old[0] is not None and waiting:
            positions = np.concatenate([np.arange(s, s + n) % self.capacity_rows for s, n in waiting])
            if old[0].shape[1] == X.shape[1]:
                self._ring_X[positions] = old[0][positions]  # type: ignore[index]
            self._ring_labels[positions] = old[1][positions]  # type: ignore[index]
            if old[2] is not None and self._ring_P is not None and old[2].shape == self._ring_P.shape:
                self._ring_P[positions] = old[2][positions]
        assert self._ring_X is not None and self._ring_labels is not None
        return self._ring_X, self._ring_labels

    # ------------------------------------------------------------ the sender thread

    def _run(self) -> None:
        out: dict[str, np.ndarray] = {}  # this sender's batch buffers, reused from batch to batch
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._chunks:  # everything buffered now: a flush by size or by time
                with self._take_lock:
                    batch = self._take(out)
                if batch:
                    self._send(batch)
            if self._closing.is_set() and not self._chunks:
                return

    def _take(self, out: dict[str, Any]) -> list[_Chunk]:
        """Chunks for one batch (at most max_batch_rows rows, all made by the same version), copied out of the
        rings into this sender's buffers, which frees their slots. Called under _take_lock: in ring order."""
        taken: list[_Chunk] = []
        n = 0
        while n < self.max_batch_rows:
            with self._lock:
                if not self._chunks:
                    break
                start, m, version, has_p, ids, moment = self._chunks[0]
                if taken and version != taken[0].version:
                    break
                room = self.max_batch_rows - n
                if m > room:  # the rest stays for the next batch
                    self._chunks[0] = (start + room, m - room, version, has_p, None if ids is None else ids[room:], moment)
                    m, ids = room, None if ids is None else ids[:room]
                else:
                    self._chunks.popleft()
                ring_X, ring_labels, ring_P = self._ring_X, self._ring_labels, self._ring_P
                assert ring_X is not None and ring_labels is not None
                if (out.get("X") is None or out["X"].shape[1] != ring_X.shape[1] or out["labels"].dtype != ring_labels.dtype
                        or (ring_P is None) != (out.get("P") is None)
                        or (ring_P is not None and out["P"].shape[1] != ring_P.shape[1])):
                    out["X"] = np.empty((self.max_batch_rows, ring_X.shape[1]), np.float32)
                    out["labels"] = np.empty(self.max_batch_rows, ring_labels.dtype)
                    out["P"] = None if ring_P is None else np.empty((self.max_batch_rows, ring_P.shape[1]), np.float32)
                rows = slice(n, n + m)
                i = start % self.capacity_rows
                where: slice | np.ndarray = (
                    slice(i, i + m) if i + m <= self.capacity_rows else np.arange(i, i + m) % self.capacity_rows
                )
                out["X"][rows] = ring_X[where]
                out["labels"][rows] = ring_labels[where]
                has_p = has_p and ring_P is not None
                if has_p:
                    out["P"][rows] = ring_P[where]  # type: ignore[index]
            taken.append(_Chunk(version, out["X"][rows], out["labels"][rows], out["P"][rows] if has_p else None,
                                ids, moment))
            n += m
        return taken

    def _generated_ids(self, n: int) -> list[str]:
        with self._ids_lock:
            start = self._next_id
            self._next_id += n
        prefix = self._id_prefix
        return [f"{prefix}{i}" for i in range(start, start + n)]

    def _encode_columns(self, chunks: list[_Chunk]) -> bytes:
        """The columnar batch: each column one array, the chunks' rows already side by side in the sender's
        buffers (_take), so this is concatenation and np.savez's copy, nearly all outside the interpreter."""
        parts = []
        for chunk in chunks:
            if chunk.ids is not None:
                parts.append("\n".join(map(str, chunk.ids)))
            else:  # "<prefix><n>" joined without a string per row in between
                with self._ids_lock:
                    start = self._next_id
                    self._next_id += len(chunk)
                parts.append(self._id_prefix + ("\n" + self._id_prefix).join(map(str, range(start, start + len(chunk)))))
        arrays: dict[str, np.ndarray] = {
            "ids": np.frombuffer("\n".join(parts).encode(), dtype=np.uint8),
            "timestamp_us": np.concatenate(
                [np.full(len(chunk), int(chunk.time * 1_000_000), dtype=np.int64) for chunk in chunks]),
            "features": np.concatenate([chunk.X for chunk in chunks]) if len(chunks) > 1 else chunks[0].X,
        }
        labels = np.concatenate([chunk.labels for chunk in chunks]) if len(chunks) > 1 else chunks[0].labels
        arrays["predicted_label"] = labels if labels.dtype.kind in "iu" else labels.astype(str)
        if all(chunk.probabilities is not None for chunk in chunks):
            arrays["probabilities"] = np.concatenate([chunk.probabilities for chunk in chunks])
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

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
            else self._generated_ids(n)
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
        version = chunks[0].version
        try:
            body = self._encode_columns(chunks) if self.columnar else self._encode(chunks)
        except Exception:  # a row the client cannot even encode: never block the rows behind it
            log.exception("could not encode %d predictions; they are not logged", n)
            self._settle(n, "rejected_rows")
            return
        key = str(uuid.uuid4())  # the same key on every retry: the server stores the batch once
        content_type = "application/x-npz" if self.columnar else "application/json"
        headers = {"Content-Type": content_type, "Idempotency-Key": key}
        if not self.index_in_request:
            # RFC 7240: store it and answer; the server's indexer takes its ids (202) instead of this request.
            headers["Prefer"] = "respond-async"
        path = self._path if not self.columnar or version is None else f"{self._path}?version={version}"
        delay = 0.25
        while True:
            try:
                self._transport.request("POST", path, body=body, headers=headers, ok=(200, 201, 202))
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
                if exc.retry_after is not None:  # the server said when (a 503 while its database restarts)
                    wait = max(wait, min(exc.retry_after, self.max_backoff))
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
