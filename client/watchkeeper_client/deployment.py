"""A deployment as a serving process sees it: which model to serve (the serving contract), its bytes, the
signing key, and the labels endpoint."""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from watchkeeper_client.errors import ModelRejected, Refused, Unreachable
from watchkeeper_client.runner import ModelRunner
from watchkeeper_client.signing import SigningKey
from watchkeeper_client.transport import Transport

log = logging.getLogger("watchkeeper_client")

MAX_LABEL_BATCH = 100_000  # the server's MAX_LABEL_BATCH default


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class Deployment:
    """`Deployment(url, token, slug, instance=...)`: a handle on one deployment.

    url: where Watchkeeper answers (e.g. "https://watchkeeper.example.com"). token: the deployment's API token.
    instance: this process's name on the deployment page (default: host name and pid).
    signing_key: pin the server's public key (PEM, or base64 of its 32 raw bytes) instead of fetching it once
    from /api/v1/signing-key; a model signed with any other key is refused.
    """

    def __init__(self, url: str, token: str, slug: str, *, instance: str | None = None,
                 signing_key: str | bytes | None = None, timeout: float = 10.0):
        self.slug = slug
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.transport = Transport(url, token, timeout=timeout)
        self._pinned_key = SigningKey.parse(signing_key) if signing_key is not None else None
        self._fetched_key: SigningKey | None = None
        self._key_lock = threading.Lock()
        self._runners: list[ModelRunner] = []
        atexit.register(_close_at_exit, weakref.ref(self))

    def __repr__(self) -> str:
        return f"Deployment({self.transport.base_url!r}, slug={self.slug!r}, instance={self.instance!r})"

    def model(self, *, fallback_path: str | Path | None = None, fallback_version: int | None = None,
              log_predictions: bool = True, poll_wait: float = 30.0, threads: int = 0, start_timeout: float = 10.0,
              buffer_rows: int = 200_000, flush_rows: int = 5_000, flush_interval: float = 1.0,
              senders: int = 2, columnar: bool = True, index_in_request: bool = False) -> ModelRunner:
        """The model this instance should serve, kept current by a background poll (see ModelRunner).

        fallback_path: an ONNX file to serve if Watchkeeper cannot be reached at start (its version is
        `fallback_version`, if known); the runner switches to the served version once Watchkeeper answers.
        buffer_rows: predictions kept while Watchkeeper is unreachable; beyond that they are dropped and counted.
        flush_rows / flush_interval: a batch is sent when this many rows are buffered, or this often.
        senders: threads posting batches (each has one in flight).
        columnar: send batches in the server's columnar format (False: JSON rows, for a server older than it).
        index_in_request: have the server index each batch's ids before it answers (201; a reused id is a 409,
        counted in stats.rejected_rows). By default the batch is stored and its ids left to the server's indexer
        (`Prefer: respond-async`, 202): a third of the request's server time (21 vs 70 ms per 10,000 rows, measured
        in process), but a reused id then rejects the batch on the server a moment later (the deployment's alerts
        say so), unseen by this counter."""
        runner = ModelRunner(
            self, fallback_path=fallback_path, fallback_version=fallback_version, log_predictions=log_predictions,
            poll_wait=poll_wait, threads=threads, start_timeout=start_timeout,
            log_options={"capacity_rows": buffer_rows, "flush_rows": min(flush_rows, buffer_rows),
                         "flush_interval": flush_interval, "senders": senders,
                         "columnar": columnar, "index_in_request": index_in_request},
        )
        self._runners.append(runner)
        return runner

    # ------------------------------------------------------------ the serving contract

    def serving(self, *, etag: str | None, wait: float, serving_version: int | None,
                timeout: float | None = None) -> tuple[dict[str, Any], str | None] | None:
        """(serving document, its ETag), or None when the server answered 304 (no change within `wait`)."""
        headers = {"Accept": "application/json"}
        query = f"instance={quote(self.instance)}"
        if etag is not None:
            headers["If-None-Match"] = etag
            query += f"&wait={int(wait)}"
        if serving_version is not None:
            headers["X-Watchkeeper-Serving-Version"] = str(serving_version)
        response = self.transport.request(
            "GET", f"/api/v1/deployments/{quote(self.slug)}/serving?{query}", headers=headers,
            timeout=timeout or (wait + 10.0 if etag is not None else None), ok=(200, 304),
        )
        if response.status == 304:
            return None
        return response.json(), response.headers.get("ETag")

    def download_model(self, url: str) -> bytes:
        # The token goes only to Watchkeeper's own origin, whatever URL the document names.
        same_origin = _origin(self.transport.url(url)) == _origin(self.transport.base_url)
        response = self.transport.request("GET", url, auth=same_origin, timeout=120.0)
        return response.body

    def signing_key(self) -> SigningKey:
        """The pinned key, or the server's, fetched once (trust on first use)."""
        if self._pinned_key is not None:
            return self._pinned_key
        with self._key_lock:
            if self._fetched_key is None:
                try:
                    document = self.transport.request("GET", "/api/v1/signing-key", auth=False).json()
                    self._fetched_key = SigningKey.from_document(document)
                except (KeyError, ValueError) as exc:
                    raise ModelRejected(f"the server's signing key is unreadable: {exc}") from None
                log.info("trusting Watchkeeper's signing key %s", self._fetched_key.key_id)
            return self._fetched_key

    # ------------------------------------------------------------ labels

    def labels(self, labels: Mapping[str, Any] | Iterable[tuple[str, Any]], *, attempts: int = 5) -> dict[str, int]:
        """Send true labels for predictions logged with your ids: {id: label} or (id, label) pairs.
        Sent now (not buffered); a transient failure is retried, which is harmless (a label overwrites)."""
        pairs = list(labels.items() if isinstance(labels, Mapping) else labels)
        total = {"received": 0, "updated": 0}
        for start in range(0, len(pairs), MAX_LABEL_BATCH):
            rows = [{"id": str(i), "label": str(label)} for i, label in pairs[start:start + MAX_LABEL_BATCH]]
            answer = self._post_labels(rows, attempts)
            for key in total:
                total[key] += int(answer.get(key, 0))
        return total

    def _post_labels(self, rows: list[dict[str, str]], attempts: int) -> dict[str, Any]:
        body = json.dumps({"labels": rows}).encode()
        for attempt in range(attempts):
            try:
                answer: dict[str, Any] = self.transport.request(
                    "POST", f"/api/v1/deployments/{quote(self.slug)}/labels", body=body,
                    headers={"Content-Type": "application/json"},
                ).json()
                return answer
            except Unreachable:
                if attempt == attempts - 1:
                    raise
                time.sleep(min(10.0, 0.5 * 2 ** attempt))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ lifetime

    def close(self, timeout: float = 30.0) -> None:
        """Close every runner (flushing its predictions) and the connections."""
        for runner in self._runners:
            runner.close(timeout)
        self._runners.clear()
        self.transport.close()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_at_exit(ref: weakref.ref[Deployment]) -> None:
    """A clean flush on interpreter exit, for a process that never called close()."""
    deployment = ref()
    if deployment is not None:
        deployment.close(timeout=10.0)


__all__ = ["Deployment", "ModelRejected", "Refused", "Unreachable"]
