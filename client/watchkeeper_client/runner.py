"""The model a serving process runs: an onnxruntime session that a background thread swaps for the version
Watchkeeper says this instance should serve, once its bytes pass the sha256 and signature checks.

The swap is one attribute assignment. predict() reads that attribute once, so a call in flight finishes on
the session it started with; the old session is freed when the last such call returns.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import onnxruntime as ort

from watchkeeper_client.errors import ModelRejected, NoModel, Refused, Unreachable
from watchkeeper_client.prediction_log import LogStats, PredictionLog
from watchkeeper_client.signing import check_model_bytes

if TYPE_CHECKING:
    from watchkeeper_client.deployment import Deployment

log = logging.getLogger("watchkeeper_client")
_FLOAT32 = np.dtype(np.float32)
_new_tuple = tuple.__new__


class Predictions(NamedTuple):
    labels: np.ndarray  # the model's label output, one per row
    probabilities: np.ndarray | None  # n × k, columns in `classes` order; None if the model has no such output
    version: int | None  # the version that made them (None: a fallback file of unknown version)


@dataclass(frozen=True)
class LoadedModel:
    version: int | None
    sha256: str | None
    session: Any  # ort.InferenceSession
    input_name: str
    outputs: tuple[str, ...]  # (label,) or (label, probabilities)
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    etag: str | None = None


def load_session(data: bytes | str, *, threads: int) -> tuple[Any, str, tuple[str, ...]]:
    """(session, input name, outputs to fetch) of a classifier: its label output and, if it has one, its
    n × k float probabilities (the plain outputs Watchkeeper's exports have, not a ZipMap)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own several types for a bad file
        raise ModelRejected(f"onnxruntime cannot load the model: {exc}") from None
    outputs = session.get_outputs()
    label = next((o.name for o in outputs if o.type in ("tensor(int64)", "tensor(string)")), None)
    if label is None:
        raise ModelRejected("the model has no label output (an int64 or string tensor)")
    probabilities = next((o.name for o in outputs if o.type == "tensor(float)" and len(o.shape or []) == 2), None)
    names = (label, probabilities) if probabilities else (label,)
    return session, session.get_inputs()[0].name, names


class ModelRunner:
    def __init__(
        self, deployment: Deployment, *, fallback_path: str | Path | None = None, fallback_version: int | None = None,
        log_predictions: bool = True, poll_wait: float = 30.0, threads: int = 0,
        start_timeout: float = 10.0, log_options: dict[str, Any] | None = None,
    ):
        self._deployment = deployment
        self.poll_wait = poll_wait
        self._threads = threads
        self._stop = threading.Event()
        self.last_error: str | None = None  # the latest refusal or failure of the poller, for a health page
        self.swaps = 0
        self._model: LoadedModel = self._first_model(fallback_path, fallback_version, start_timeout)
        self._log = (
            PredictionLog(deployment.transport, deployment.slug, instance=deployment.instance, **(log_options or {}))
            if log_predictions else None
        )
        self._poller = threading.Thread(target=self._poll_forever, name=f"watchkeeper-poll-{deployment.slug}",
                                        daemon=True)
        self._poller.start()

    # ------------------------------------------------------------ serving

    @property
    def version(self) -> int | None:
        return self._model.version

    @property
    def classes(self) -> tuple[str, ...]:
        return self._model.classes

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._model.feature_names

    @property
    def stats(self) -> LogStats | None:
        return self._log.stats if self._log is not None else None

    def predict(self, X: np.ndarray, ids: Any = None) -> Predictions:
        """Run the current model on X (n × features, float32) and log the rows in the background.

        Pass `ids` (one unique string per row, e.g. your request ids) to send labels for them later with
        Deployment.labels(); without them, the client makes ids of its own.

        X is kept by reference until a sender encodes its batch (at the next flush; later during an outage): don't
        write into it after predict() returns (pass a copy if you reuse one buffer for every request)."""
        model = self._model  # one read: a swap during this call does not affect it
        try:
            # `is` first: a dtype comparison with == costs more than the rest of the logging.
            if type(X) is not np.ndarray or (X.dtype is not _FLOAT32 and X.dtype != _FLOAT32) or X.ndim != 2:
                X = np.atleast_2d(np.asarray(X, dtype=np.float32))
            if ids is not None and len(ids) != len(X):
                raise ValueError(f"{len(ids)} ids for {len(X)} rows")
            started = time.perf_counter_ns()
            outputs = model.session.run(model.outputs, {model.input_name: X})
            latency_ns = time.perf_counter_ns() - started  # the session run only: what the version costs
        except Exception:
            if self._log is not None:  # a failed call logs no rows, but the error rate guard counts it
                self._log.add_error(model.version)
            raise
        labels = outputs[0]
        probabilities = outputs[1] if len(outputs) > 1 else None
        if self._log is not None:
            self._log.add(model.version, X, labels, probabilities, ids, time.time(), latency_ns)
        # tuple.__new__ skips the NamedTuple's Python-level __new__: a quarter of a µs, 2 % of a batch-64 run.
        return _new_tuple(Predictions, (labels, probabilities, model.version))

    # ------------------------------------------------------------ choosing and loading a version

    def _first_model(self, fallback_path: str | Path | None, fallback_version: int | None, timeout: float) -> LoadedModel:
        try:
            response = self._deployment.serving(etag=None, wait=0, serving_version=None, timeout=timeout)
            assert response is not None
            return self._load(*response)
        except (Unreachable, ModelRejected) as exc:
            if fallback_path is None:
                raise NoModel(f"Watchkeeper gave no model to serve ({exc}) and no fallback_path was given") from exc
            log.warning("serving the fallback file %s until Watchkeeper answers: %s", fallback_path, exc)
            self.last_error = str(exc)
            session, input_name, outputs = load_session(str(fallback_path), threads=self._threads)
            return LoadedModel(fallback_version, None, session, input_name, outputs, (), ())

    def _load(self, document: dict[str, Any], etag: str | None) -> LoadedModel:
        model = document["model"]
        sha256 = model["sha256"]
        data = self._deployment.download_model(model["url"])
        check_model_bytes(data, sha256_hex=sha256, size=model.get("size"), key=self._deployment.signing_key(),
                          signature_b64=model["signature"], key_id=model["key_id"])
        session, input_name, outputs = load_session(data, threads=self._threads)
        return LoadedModel(int(document["version"]), sha256, session, input_name, outputs,
                           tuple(document.get("classes") or ()), tuple(document.get("feature_names") or ()), etag)

    def _apply(self, document: dict[str, Any], etag: str | None) -> None:
        current = self._model
        if document["version"] == current.version and document["model"]["sha256"] == current.sha256:
            self._model = LoadedModel(**{**current.__dict__, "etag": etag})
            return
        loaded = self._load(document, etag)
        self._model = loaded  # the swap
        self.swaps += 1
        self.last_error = None
        log.info("%s: now serving version %s (was %s)", self._deployment.slug, loaded.version, current.version)

    def _poll_forever(self) -> None:
        failures = 0
        etag = self._model.etag
        report_now = False
        while not self._stop.is_set():
            try:
                # Right after a swap, one poll that does not wait: the server records the version now served
                # when a poll ends, and the deployment page should show it now, not a long poll later.
                response = self._deployment.serving(etag=etag, wait=0 if report_now else self.poll_wait,
                                                    serving_version=self._model.version)
                report_now = False
                if response is not None:  # None: 304, nothing changed
                    document, new_etag = response
                    swaps = self.swaps
                    try:
                        self._apply(document, new_etag)
                    except ModelRejected:
                        etag = new_etag  # wait for the next change; the old model keeps serving
                        raise
                    etag = new_etag  # not before: a download cut short is tried again on the next poll
                    report_now = self.swaps != swaps
                failures = 0
                continue
            except ModelRejected as exc:
                self.last_error = f"refused the model: {exc}"
                log.error("%s: refused the model Watchkeeper offered, still serving version %s: %s",
                          self._deployment.slug, self._model.version, exc)
                continue
            except Refused as exc:
                self.last_error = str(exc)
                log.error("%s: Watchkeeper refused the serving poll: %s", self._deployment.slug, exc)
                delay = 60.0
            except Unreachable as exc:
                self.last_error = str(exc)
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("%s: Watchkeeper unreachable (%s); next poll in %.0f s", self._deployment.slug, exc, delay)
            except Exception:  # a bug or an odd answer must not end the poller: the service keeps serving
                log.exception("%s: the serving poll failed", self._deployment.slug)
                delay = 30.0
            self._stop.wait(delay * random.uniform(0.8, 1.0))

    # ------------------------------------------------------------ lifetime

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every prediction logged so far is stored; True if it was within `timeout` s."""
        return self._log.flush(timeout) if self._log is not None else True

    def close(self, timeout: float = 30.0) -> None:
        """Stop polling and send every buffered prediction (giving up after `timeout` s)."""
        self._stop.set()
        if self._log is not None:
            self._log.close(timeout)

    def __enter__(self) -> ModelRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
