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
import urllib.parse
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
    """One predict call's rows: the caller's arrays themselves, copied and encoded only on a sender thread.
    latency_ns is the call's session run; None on the rest of a call split over two batches (counted once)."""

    __slots__ = ("X", "ids", "labels", "latency_ns", "probabilities", "time", "version")

    def __init__(self, version: int | None, X: np.ndarray, labels: np.ndarray, probabilities: np.ndarray | None,
                 ids: Any, moment: float, latency_ns: int | None = None):
        self.version = version
        self.X = X
        self.labels = labels
        self.probabilities = probabilities
        self.ids = ids
        self.time = moment
        self.latency_ns = latency_ns

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
        self._instance = instance
        self.columnar = columnar
        self.index_in_request = index_in_request
        self.capacity_rows = capacity_rows
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self.max_batch_rows = min(max_batch_rows, MAX_BATCH_ROWS)
        self.max_backoff = max_backoff
        self.stats = LogStats()
        self._stats_lock = threading.Lock()
        # One _Chunk per predict call, in call order. The caller's thread only appends a reference (no copy, no
        # allocation beyond the chunk): at batch 64 a copy of the rows costs more than the 5 % the caller may pay.
        # (version, X, labels, probabilities, ids, time, latency ns)
        self._chunks: deque[tuple[Any, ...]] = deque()
        # Failed predict calls by version, not yet sent: they go with the next batch of that version, or alone.
        self._errors: dict[int | None, int] = {}
        self._error_reports_sending = 0  # taken out of _errors, not yet stored or given up: flush() waits for them
        self._lock = threading.Lock()
        self._buffered = 0  # rows appended and not yet stored, refused or abandoned: what bounds the buffer
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
            ids: Any, moment: float, latency_ns: int | None = None) -> bool:
        """Buffer one call's rows by reference: X is read when a sender encodes its batch, so the caller must not
        write into it after predict() returns (labels and probabilities are onnxruntime's fresh outputs)."""
        n = len(X)
        with self._lock:
            if self._buffered + n > self.capacity_rows or self._closed:
                self.stats.dropped_rows += n
                return False
            self._buffered += n
            self._chunks.append((version, X, labels, probabilities, ids, moment, latency_ns))  # cheaper than a _Chunk
        if self._buffered >= self.flush_rows:
            self._wake.set()
        return True

    def add_error(self, version: int | None) -> None:
        """A predict call that raised: no rows, but counted in the next report of calls (the error rate guard)."""
        with self._lock:
            if not self._closed:
                self._errors[version] = self._errors.get(version, 0) + 1

    # ------------------------------------------------------------ the sender thread

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._chunks:  # everything buffered now: a flush by size or by time
                with self._take_lock:
                    batch, errors = self._take()
                if batch:
                    self._send(batch, errors)
            if self._errors:  # failed calls with no batch of their version to ride on
                self._send_errors()
            if self._closing.is_set() and not self._chunks:
                return

    def _take(self) -> tuple[list[_Chunk], int]:
        """Chunks for one batch (at most max_batch_rows rows, all made by the same version, in call order) and that
        version's failed calls so far. Called
        under _take_lock, so this sender is the only one removing from the deque, and without the lock add()
        takes: the caller only appends on the right, and each deque operation here is atomic."""
        taken: list[_Chunk] = []
        n = 0
        chunks = self._chunks
        while chunks and n < self.max_batch_rows:
            chunk = _Chunk(*chunks[0])
            if taken and chunk.version != taken[0].version:
                break
            room = self.max_batch_rows - n
            if len(chunk) > room:  # the rest stays for the next batch, without the call's latency (counted here)
                cut = slice(None, room)
                chunks[0] = (chunk.version, chunk.X[room:], chunk.labels[room:],
                             None if chunk.probabilities is None else chunk.probabilities[room:],
                             None if chunk.ids is None else chunk.ids[room:], chunk.time, None)
                chunk = _Chunk(chunk.version, chunk.X[cut], chunk.labels[cut],
                               None if chunk.probabilities is None else chunk.probabilities[cut],
                               None if chunk.ids is None else chunk.ids[cut], chunk.time, chunk.latency_ns)
            else:
                chunks.popleft()
            taken.append(chunk)
            n += len(chunk)
        if not taken:
            return taken, 0
        with self._lock:
            errors = self._errors.pop(taken[0].version, 0)
        return taken, errors

    def _generated_ids(self, n: int) -> list[str]:
        with self._ids_lock:
            start = self._next_id
            self._next_id += n
        prefix = self._id_prefix
        return [f"{prefix}{i}" for i in range(start, start + n)]

    def _encode_columns(self, chunks: list[_Chunk], errors: int = 0) -> bytes:
        """The columnar batch: each column one array, the chunks' rows concatenated (the one copy of the caller's
        rows, in numpy without the GIL) and np.savez's copy; the per-chunk Python work is a few list entries."""
        counts = [len(chunk) for chunk in chunks]
        arrays: dict[str, np.ndarray] = {
            "ids": np.frombuffer(self._joined_ids(chunks, counts), dtype=np.uint8),
            "timestamp_us": np.repeat(np.array([int(chunk.time * 1_000_000) for chunk in chunks], np.int64), counts),
            "features": np.concatenate([chunk.X for chunk in chunks]) if len(chunks) > 1 else chunks[0].X,
        }
        labels = np.concatenate([chunk.labels for chunk in chunks]) if len(chunks) > 1 else chunks[0].labels
        arrays["predicted_label"] = labels if labels.dtype.kind in "iu" else labels.astype(str)
        if all(chunk.probabilities is not None for chunk in chunks):
            arrays["probabilities"] = np.concatenate([chunk.probabilities for chunk in chunks])
        latency_us = _latency_us(chunks)
        arrays |= {"latency_us": latency_us, "calls": np.array(len(latency_us) + errors, dtype=np.int64),
                   "errors": np.array(errors, dtype=np.int64)}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    def _joined_ids(self, chunks: list[_Chunk], counts: list[int]) -> bytes:
        """Every row's id joined by newlines: the caller's own, or "<prefix><n>" from the counter, one range per
        run of chunks without ids (batch-1 calls make 10,000 chunks a batch: no join per chunk)."""
        parts: list[str] = []
        generated = 0  # rows of the current run of chunks without ids
        for chunk, count in zip(chunks, counts):
            if chunk.ids is None:
                generated += count
                continue
            if generated:
                parts.append(self._generated_run(generated))
                generated = 0
            parts.append("\n".join(map(str, chunk.ids)))
        if generated:
            parts.append(self._generated_run(generated))
        return "\n".join(parts).encode()

    def _generated_run(self, n: int) -> str:
        with self._ids_lock:
            start = self._next_id
            self._next_id += n
        prefix = self._id_prefix
        return prefix + ("\n" + prefix).join(map(str, range(start, start + n)))

    def _encode(self, chunks: list[_Chunk], errors: int = 0) -> bytes:
        """The JSON batch. Each chunk is encoded on its own: orjson holds the GIL while it runs, so the caller's
        thread waits at most one chunk's encoding (a 1,000-row chunk: a few ms), not a whole batch's."""
        latency_us = _latency_us(chunks).tolist()
        head = json.dumps(self._calls_fields(chunks[0].version, len(latency_us) + errors, errors),
                          separators=(",", ":")).encode()[:-1]
        head += b',"latency_us":%s,"predictions":[' % json.dumps(latency_us, separators=(",", ":")).encode()
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

    def _calls_fields(self, version: int | None, calls: int, errors: int) -> dict[str, Any]:
        fields: dict[str, Any] = {} if version is None else {"version": version}
        return fields | {"instance": self._instance, "calls": calls, "errors": errors}

    def _send_errors(self) -> None:
        """Each version's failed calls that no batch took, as a report without rows (always JSON: a few bytes)."""
        with self._lock:
            pending, self._errors = self._errors, {}
            self._error_reports_sending += len(pending)
        for version, errors in pending.items():
            body = json.dumps(self._calls_fields(version, errors, errors) | {"predictions": []}).encode()
            try:
                self._post(body, {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
                           self._path, what=f"a report of {errors} failed calls", n=0)
            finally:
                with self._lock:
                    self._error_reports_sending -= 1

    def _send(self, chunks: list[_Chunk], errors: int = 0) -> None:
        n = sum(len(chunk) for chunk in chunks)
        version = chunks[0].version
        try:
            body = self._encode_columns(chunks, errors) if self.columnar else self._encode(chunks, errors)
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
        path = self._path
        if self.columnar:
            query = {"instance": self._instance} | ({} if version is None else {"version": version})
            path = f"{self._path}?{urllib.parse.urlencode(query)}"
        self._post(body, headers, path, what=f"a batch of {n} predictions", n=n)

    def _post(self, body: bytes, headers: dict[str, str], path: str, *, what: str, n: int) -> None:
        """Post until stored, refused or abandoned at close; n rows are settled with the outcome."""
        delay = 0.25
        while True:
            try:
                self._transport.request("POST", path, body=body, headers=headers, ok=(200, 201, 202))
            except Refused as exc:
                log.error("Watchkeeper refused %s (%s); not logged", what, exc)
                self._settle(n, "rejected_rows")
                return
            except Unreachable as exc:
                if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                    log.warning("closing: %s could not be sent (%s)", what, exc)
                    self._settle(n, "unsent_rows")
                    return
                with self._stats_lock:
                    self.stats.retries += 1
                wait = min(delay, self.max_backoff) * random.uniform(0.5, 1.0)
                if exc.retry_after is not None:  # the server said when (a 503 while its database restarts)
                    wait = max(wait, min(exc.retry_after, self.max_backoff))
                log.warning("could not send %s (%s); retrying in %.1f s", what, exc, wait)
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
        while self._unsent() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        return not self._unsent()

    def _unsent(self) -> bool:
        return self._buffered > 0 or bool(self._errors) or self._error_reports_sending > 0

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


def _latency_us(chunks: list[_Chunk]) -> np.ndarray:
    """The latency of each call timed in these chunks, in µs (the server's histogram starts at 16 µs)."""
    return np.array([chunk.latency_ns // 1000 for chunk in chunks if chunk.latency_ns is not None], dtype=np.int64)
