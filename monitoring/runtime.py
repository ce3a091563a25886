"""Running ONNX models with onnxruntime. No Django here.

`inspect_model` validates an upload and reads its signature; `ModelRunner`
predicts; `measure_latency` times single-row and batched calls after warm-up.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import onnx
import onnxruntime as ort

from monitoring.metrics import encode

# Attribute names that tree/linear/SVM classifiers from skl2onnx use for their classes.
_CLASS_LABEL_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


class InvalidModelError(ValueError):
    """An uploaded file is not a usable classifier for this deployment. The message is user-facing."""


@dataclass(frozen=True)
class ModelSignature:
    input_name: str
    input_shape: list
    n_features: int
    output_names: list[str]
    label_output: str
    probability_output: str
    class_labels: list[str]
    feature_names: list[str]
    opset: int
    producer: str


@dataclass
class Predictions:
    # The label output as the model gave it: int64, or an object array of str for string classes.
    raw_labels: np.ndarray
    probabilities: np.ndarray | None  # n_rows × n_classes, columns in class_labels order

    @cached_property
    def labels(self) -> np.ndarray:
        """Canonical string labels, decoded on first use: evaluation works in class indices and never needs them."""
        if self.raw_labels.dtype.kind in "SO":
            return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in self.raw_labels])
        return self.raw_labels.astype(str)

    def label_indices(self, class_labels: list[str]) -> np.ndarray:
        """Index of each predicted label in class_labels (-1 for none), without making strings of them."""
        return encode(self.raw_labels, class_labels)


@dataclass(frozen=True)
class LatencyReport:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_rows_per_s: float
    batch_size: int
    n_calls: int
    extra: dict = field(default_factory=dict)


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def _class_labels_from_graph(model: onnx.ModelProto) -> list[str]:
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in _CLASS_LABEL_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    # skl2onnx's MLP and some pipelines keep the classes as an initializer feeding ArrayFeatureExtractor.
    initializers = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "ArrayFeatureExtractor" and node.input and node.input[0] in initializers:
            values = onnx.numpy_helper.to_array(initializers[node.input[0]])
            return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]
    return []


def inspect_model(data: bytes, *, expected_features: int | None = None) -> ModelSignature:
    """Validate ONNX bytes as a single-input classifier and read its signature.

    Raises InvalidModelError with a message a user can act on.
    """
    if not data:
        raise InvalidModelError("The file is empty.")
    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError and friends
        raise InvalidModelError(f"The file is not a valid ONNX model: {str(exc).splitlines()[0][:200]}") from None
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InvalidModelError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0][:200]}") from None

    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise InvalidModelError(f"The model must take exactly one input tensor; it takes {len(inputs)} ({names}).")
    model_input = inputs[0]
    if model_input.type != "tensor(float)":
        raise InvalidModelError(f"The model input must be tensor(float); it is {model_input.type}.")
    shape = list(model_input.shape)
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise InvalidModelError(f"The model input must be [batch, n_features] with a fixed n_features; it is {shape}.")
    n_features = shape[1]
    if expected_features is not None and n_features != expected_features:
        raise InvalidModelError(
            f"The model takes {n_features} features but the deployment's schema has {expected_features}."
        )

    outputs = session.get_outputs()
    output_names = [o.name for o in outputs]
    label_output = next((o.name for o in outputs if o.type in ("tensor(int64)", "tensor(string)")), "")
    if not label_output:
        raise InvalidModelError(
            "The model has no label output (an int64 or string tensor); only classifiers are supported."
        )
    probability_output = next(
        (o.name for o in outputs if o.type == "tensor(float)" and len(o.shape or []) == 2), ""
    )

    metadata = _metadata(model)
    class_labels = json.loads(metadata["class_labels"]) if "class_labels" in metadata else []
    if not class_labels:
        class_labels = _class_labels_from_graph(model)
    class_labels = [str(label) for label in class_labels]
    feature_names = json.loads(metadata["feature_names"]) if "feature_names" in metadata else []
    if feature_names and len(feature_names) != n_features:
        raise InvalidModelError(
            f"The model's metadata names {len(feature_names)} features but its input takes {n_features}."
        )

    # A smoke run: a model that loads but cannot predict on zeros is of no use.
    try:
        session.run(None, {model_input.name: np.zeros((2, n_features), dtype=np.float32)})
    except Exception as exc:
        raise InvalidModelError(f"The model fails on a test input: {str(exc).splitlines()[0][:200]}") from None

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ModelSignature(
        input_name=model_input.name,
        input_shape=[None if not isinstance(d, int) else d for d in shape],
        n_features=n_features,
        output_names=output_names,
        label_output=label_output,
        probability_output=probability_output,
        class_labels=class_labels,
        feature_names=[str(name) for name in feature_names],
        opset=int(opset),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )


class ModelRunner:
    """An onnxruntime session plus the knowledge of which output is which."""

    def __init__(self, data: bytes, *, label_output: str, probability_output: str = "", class_labels=()):
        options = ort.SessionOptions()
        # Two cores here; one intra-op thread per session keeps concurrent workers from fighting.
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.label_output = label_output
        self.probability_output = probability_output
        self.class_labels = [str(c) for c in class_labels]

    def predict(
        self, X: np.ndarray, *, batch_size: int = 65_536, probability_dtype: type = np.float64
    ) -> Predictions:
        """Predict in fixed-size batches: bounded memory whatever the window size.

        Each output is allocated once and filled batch by batch. probability_dtype=np.float32 keeps the
        model's own precision (the same values, without a widened copy), as evaluation does.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        if len(X) == 0:
            return Predictions(np.array([], dtype=str), None)
        wanted = [self.label_output] + ([self.probability_output] if self.probability_output else [])
        raw = probabilities = None
        for start in range(0, len(X), batch_size):
            part = slice(start, start + batch_size)
            outputs = [np.asarray(output) for output in self.session.run(wanted, {self.input_name: X[part]})]
            if raw is None:
                raw = np.empty((len(X), *outputs[0].shape[1:]), dtype=outputs[0].dtype)
                if self.probability_output:
                    probabilities = np.empty((len(X), *outputs[1].shape[1:]), dtype=probability_dtype)
            raw[part] = outputs[0]
            if probabilities is not None:
                probabilities[part] = outputs[1]
        return Predictions(raw, probabilities)

    def call(self, X: np.ndarray) -> None:
        self.session.run(None, {self.input_name: X})


def measure_latency(
    runner: ModelRunner, X: np.ndarray, *, batch_size: int = 1, warmup: int = 20, calls: int = 200
) -> LatencyReport:
    """Time `calls` inference calls of `batch_size` rows each, after `warmup` untimed calls.

    Rows cycle through X so every call sees real data, not a cached tensor.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    if len(X) == 0:
        raise ValueError("latency needs at least one row")
    reps = int(np.ceil(batch_size * (calls + warmup) / len(X)))
    pool = np.concatenate([X] * max(reps, 1))
    batches = [pool[i * batch_size : (i + 1) * batch_size] for i in range(calls + warmup)]
    for batch in batches[:warmup]:
        runner.call(batch)
    timings = np.empty(calls)
    for i, batch in enumerate(batches[warmup:]):
        start = time.perf_counter()
        runner.call(batch)
        timings[i] = time.perf_counter() - start
    p50, p95, p99 = np.percentile(timings * 1000.0, [50, 95, 99])
    return LatencyReport(
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        throughput_rows_per_s=float(batch_size * calls / timings.sum()),
        batch_size=batch_size,
        n_calls=calls,
    )


class SessionCache:
    """Runners keyed by sha256. The caller verifies the bytes (storage.read_blob) before first use."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._runners: OrderedDict[str, ModelRunner] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str, load) -> ModelRunner:
        with self._lock:
            runner = self._runners.get(sha256)
            if runner is not None:
                self._runners.move_to_end(sha256)
                return runner
        runner = load()
        with self._lock:
            self._runners[sha256] = runner
            while len(self._runners) > self.capacity:
                self._runners.popitem(last=False)
        return runner


SESSIONS = SessionCache()
