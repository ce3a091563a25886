"""Running ONNX models with onnxruntime. No Django here.

`inspect_model` validates an upload and reads its signature; `ModelRunner`
predicts; `measure_latency` times single-row and batched calls after warm-up.

User bytes reach onnxruntime only after `refuse_external_data` has walked the whole model: a tensor whose data
lives "outside" the file is read by onnxruntime from a path (relative to the working directory) or from a raw
memory address. The first session from an upload is created in a limited child process (monitoring/smoke.py),
and what the user reads is our wording; the engine's own text goes to the log.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import onnx
import onnxruntime as ort

from monitoring.metrics import encode
from monitoring.smoke import SMOKE

logger = logging.getLogger(__name__)

# Attribute names that tree/linear/SVM classifiers from skl2onnx use for their classes.
_CLASS_LABEL_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")
# What the smoke run of an upload may add to its process's address space, and how long it may take. A 200 MB
# model (the upload cap) needs well under 1 GiB to load and run two rows; a graph that wants more is refused.
SMOKE_MEMORY_BYTES = 2 * 1024 ** 3
SMOKE_TIMEOUT_SECONDS = 30.0
# Words in onnxruntime's messages when an allocation failed (a C++ bad_alloc under the limit, or its own arena).
_ALLOCATION_FAILURES = ("bad_alloc", "bad allocation", "failed to allocate", "out of memory", "memoryerror")


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


def _metadata_names(metadata: dict[str, str], key: str) -> list[str]:
    """A metadata entry that must be a JSON list of names (strings or numbers), as estimator_to_onnx writes."""
    if key not in metadata:
        return []
    try:
        value = json.loads(metadata[key])
    except (ValueError, RecursionError):
        raise InvalidModelError(f"The model's metadata {key!r} is not valid JSON; it must be a JSON list of names.") from None
    if not isinstance(value, list) or not all(
        isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value
    ):
        raise InvalidModelError(f"The model's metadata {key!r} must be a JSON list of names (strings or numbers).")
    return [str(item) for item in value]


def _class_labels_from_graph(model: onnx.ModelProto) -> list[str]:
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in _CLASS_LABEL_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in values]
    # skl2onnx's MLP and some pipelines keep the classes as an initializer feeding ArrayFeatureExtractor.
    initializers = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "ArrayFeatureExtractor" and node.input and node.input[0] in initializers:
            values = onnx.numpy_helper.to_array(initializers[node.input[0]])
            return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in values.tolist()]
    return []


def refuse_external_data(model: onnx.ModelProto) -> None:
    """Raise InvalidModelError if any tensor anywhere in the model keeps its data outside the file.

    Walks the main graph, the training graphs and every function, and in each graph the initializers, the
    sparse initializers and every node attribute (tensors, tensor lists, sparse tensors), descending into the
    subgraphs of If, Loop and Scan bodies and any other graph attribute. Iterative: depth costs no stack.
    """
    graphs = [model.graph]
    for training in model.training_info:
        graphs += [training.initialization, training.algorithm]
    # A function's attribute defaults (attribute_proto) are tensors and graphs too: a node inside it may
    # take one by ref_attr_name, so onnxruntime loads them like any other attribute.
    attributes: list[onnx.AttributeProto] = [
        attribute for function in model.functions
        for attribute in [*function.attribute_proto, *(a for node in function.node for a in node.attribute)]
    ]
    while graphs or attributes:
        if graphs:
            graph = graphs.pop()
            for tensor in graph.initializer:
                _refuse_external_tensor(tensor)
            for sparse in graph.sparse_initializer:
                _refuse_external_tensor(sparse.values)
                _refuse_external_tensor(sparse.indices)
            attributes.extend(attribute for node in graph.node for attribute in node.attribute)
            continue
        attribute = attributes.pop()
        tensors = [*([attribute.t] if attribute.HasField("t") else []), *attribute.tensors]
        sparses = [*([attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []), *attribute.sparse_tensors]
        for sparse in sparses:
            tensors += [sparse.values, sparse.indices]
        for tensor in tensors:
            _refuse_external_tensor(tensor)
        if attribute.HasField("g"):
            graphs.append(attribute.g)
        graphs.extend(attribute.graphs)


def _refuse_external_tensor(tensor: onnx.TensorProto) -> None:
    if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
        name = tensor.name[:100] or "(unnamed)"
        raise InvalidModelError(
            f"The model keeps the data of tensor {name!r} outside the file (external data). "
            "Upload a model with all its tensors inside the .onnx file."
        )


def _parse(data: bytes) -> onnx.ModelProto:
    """Parse and check ONNX bytes, refusing external data before anything could read it."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001  protobuf's DecodeError and friends: all mean not ONNX
        raise InvalidModelError(f"The file is not a valid ONNX model: {str(exc).splitlines()[0][:200]}") from None
    refuse_external_data(model)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001  ValidationError and friends: about the user's own graph
        raise InvalidModelError(f"The file is not a valid ONNX model: {str(exc).splitlines()[0][:200]}") from None
    return model


def _is_allocation_failure(text: str) -> bool:
    return any(word in text.lower() for word in _ALLOCATION_FAILURES)


def _smoke_failure(report: dict, *, memory_bytes: int, timeout_seconds: float) -> InvalidModelError | None:
    """Our message for a failed smoke run, or None. The engine's raw text is logged, never shown."""
    outcome = report.get("outcome")
    memory = f"The model needs more than {memory_bytes // 1024 ** 2:,} MB of memory to load and predict two rows"
    if outcome == "loaded":
        if report.get("run") == "memory" or (
            report.get("run") == "failed" and _is_allocation_failure(report.get("run_error", ""))
        ):
            return InvalidModelError(f"{memory}: its shapes or loops are too large.")
        if report.get("run") == "failed":
            logger.info("model smoke run failed: %s: %s", report.get("run_kind"), report.get("run_error"))
            return InvalidModelError(
                f"The model fails on a test input of two rows of zeros (onnxruntime {ort.__version__} "
                f"raised {report.get('run_kind', 'an error')})."
            )
        return None
    logger.info("model smoke run: %s: %s %s", outcome, report.get("kind", ""), report.get("error", ""))
    if outcome == "memory" or (outcome == "load_failed" and _is_allocation_failure(report.get("error", ""))):
        return InvalidModelError(f"{memory}: its shapes or initializers are too large.")
    if outcome == "timeout":
        return InvalidModelError(
            f"The model did not load and predict two rows within {timeout_seconds:g} s: its loops or shapes are "
            "too large."
        )
    if outcome == "load_failed":
        return InvalidModelError(
            f"onnxruntime {ort.__version__} cannot load the model ({report.get('kind', 'error')}). Check that it "
            "loads in onnxruntime and uses only standard operators."
        )
    return InvalidModelError("onnxruntime stopped while loading the model or predicting two rows of zeros.")


def inspect_model(
    data: bytes,
    *,
    expected_features: int | None = None,
    memory_bytes: int = SMOKE_MEMORY_BYTES,
    timeout_seconds: float = SMOKE_TIMEOUT_SECONDS,
) -> ModelSignature:
    """Validate ONNX bytes as a single-input classifier and read its signature.

    The session is created, and two rows of zeros predicted, only in a child process limited to `memory_bytes`
    more address space and `timeout_seconds` (monitoring/smoke.py). Raises InvalidModelError with a message a
    user can act on.
    """
    if not data:
        raise InvalidModelError("The file is empty.")
    model = _parse(data)
    metadata = _metadata(model)
    class_labels = _metadata_names(metadata, "class_labels")
    feature_names = _metadata_names(metadata, "feature_names")

    report = SMOKE.run(data, memory_bytes=memory_bytes, timeout_seconds=timeout_seconds)
    if report.get("outcome") != "loaded":
        raise _smoke_failure(report, memory_bytes=memory_bytes, timeout_seconds=timeout_seconds)

    inputs = report["inputs"]
    if len(inputs) != 1:
        names = ", ".join(i["name"] for i in inputs)
        raise InvalidModelError(f"The model must take exactly one input tensor; it takes {len(inputs)} ({names}).")
    model_input = inputs[0]
    if model_input["type"] != "tensor(float)":
        raise InvalidModelError(f"The model input must be tensor(float); it is {model_input['type']}.")
    shape = list(model_input["shape"])
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise InvalidModelError(f"The model input must be [batch, n_features] with a fixed n_features; it is {shape}.")
    n_features = shape[1]
    if expected_features is not None and n_features != expected_features:
        raise InvalidModelError(
            f"The model takes {n_features} features but the deployment's schema has {expected_features}."
        )

    outputs = report["outputs"]
    output_names = [o["name"] for o in outputs]
    label_output = next((o["name"] for o in outputs if o["type"] in ("tensor(int64)", "tensor(string)")), "")
    if not label_output:
        raise InvalidModelError(
            "The model has no label output (an int64 or string tensor); only classifiers are supported."
        )
    probability_output = next(
        (o["name"] for o in outputs if o["type"] == "tensor(float)" and len(o["shape"] or []) == 2), ""
    )

    if not class_labels:
        class_labels = _class_labels_from_graph(model)
    class_labels = [str(label) for label in class_labels]
    if feature_names and len(feature_names) != n_features:
        raise InvalidModelError(
            f"The model's metadata names {len(feature_names)} features but its input takes {n_features}."
        )

    # A smoke run: a model that loads but cannot predict on zeros is of no use.
    failure = _smoke_failure(report, memory_bytes=memory_bytes, timeout_seconds=timeout_seconds)
    if failure is not None:
        raise failure

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ModelSignature(
        input_name=model_input["name"],
        input_shape=[None if not isinstance(d, int) else d for d in shape],
        n_features=n_features,
        output_names=output_names,
        label_output=label_output,
        probability_output=probability_output,
        class_labels=class_labels,
        feature_names=feature_names,
        opset=int(opset),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )


class ModelRunner:
    """An onnxruntime session plus the knowledge of which output is which."""

    def __init__(self, data: bytes, *, label_output: str, probability_output: str = "", class_labels=()):
        # Stored bytes passed inspect_model at upload; check again, as this session is made in our own process.
        refuse_external_data(onnx.load_model_from_string(data))
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
