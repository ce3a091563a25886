"""What every compression method shares: the NotApplicable error, the report, and a look at the graph.

No Django here: ONNX bytes and numpy in, ONNX bytes and dataclasses out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from monitoring.runtime import ModelRunner, inspect_model


class NotApplicable(Exception):
    """The method cannot make this model smaller. `reason` is user-facing."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CompressionReport:
    method: str
    size_before: int
    size_after: int
    # What the method did, in a few numbers: {"sparsity": 0.62, "rank": {"W1": 12}} …
    details: dict = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        return round(self.size_after / self.size_before, 4) if self.size_before else 1.0

    def as_dict(self) -> dict:
        return asdict(self) | {"size_ratio": self.size_ratio}


# Graph families, as skl2onnx compiles them.
MLP, LINEAR, TREES, OTHER = "mlp", "linear", "tree_ensemble", "other"
_TREE_OPS = {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"}
_LINEAR_OPS = {"LinearClassifier", "LinearRegressor", "SVMClassifier"}
# Ops whose second input is a weight matrix we can rewrite.
_DENSE_OPS = {"MatMul", "Gemm"}


def graph_family(model: onnx.ModelProto) -> str:
    """MLP (dense MatMul/Gemm weights), linear (one ONNX-ML linear op), tree ensemble, or other."""
    ops = {node.op_type for node in model.graph.node}
    if ops & _TREE_OPS:
        return TREES
    if dense_weights(model):
        return MLP
    if ops & _LINEAR_OPS:
        return LINEAR
    return OTHER


def dense_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The 2-D float initializers that are the weight input of a MatMul/Gemm, by name (each listed once)."""
    initializers = {init.name: init for init in model.graph.initializer}
    found: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type not in _DENSE_OPS or len(node.input) < 2:
            continue
        init = initializers.get(node.input[1])
        if init is None or init.data_type != onnx.TensorProto.FLOAT or len(init.dims) != 2:
            continue
        found[init.name] = numpy_helper.to_array(init)
    return found


def describe_ops(model: onnx.ModelProto) -> str:
    return ", ".join(sorted({node.op_type for node in model.graph.node}))


def not_for_family(method_label: str, model: onnx.ModelProto) -> NotApplicable:
    """The reason a weight-rewriting method does not fit a linear model or a tree ensemble, in plain words."""
    family = graph_family(model)
    if family == TREES:
        why = (
            "it is a tree ensemble: its thresholds and leaf values live as attributes of one "
            "TreeEnsembleClassifier operator, not as weight tensors, and onnxruntime's quantizers only rewrite "
            "MatMul/Conv/Gather weights. Distillation into a small student is the way to shrink it."
        )
    elif family == LINEAR:
        why = (
            "it is a linear model compiled to a single ONNX-ML LinearClassifier operator whose coefficients are "
            "attributes, not weight tensors; there is nothing for the method to rewrite, and the file is already "
            "a few kilobytes."
        )
    else:
        why = f"it has no dense weight matrices (its operators are {describe_ops(model)})."
    return NotApplicable(f"{method_label} does not apply to this model: {why}")


def require_dense(method_label: str, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    weights = dense_weights(model)
    if not weights:
        raise not_for_family(method_label, model)
    return weights


def runner(data: bytes) -> ModelRunner:
    signature = inspect_model(data)
    return ModelRunner(
        data, label_output=signature.label_output, probability_output=signature.probability_output,
        class_labels=signature.class_labels,
    )


def replace_initializer(model: onnx.ModelProto, name: str, nodes: list[onnx.NodeProto],
                        initializers: list[onnx.TensorProto]) -> None:
    """Drop initializer `name` and compute a tensor of the same name in-graph instead, at the top of the graph
    (topologically first: the new nodes only read constants)."""
    kept = [init for init in model.graph.initializer if init.name != name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + initializers)
    existing = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + existing)


# Metadata the quantizers stamp on their output; nothing reads it back.
_TOOL_METADATA = frozenset({"onnx.infer"})


def tidy(data: bytes) -> bytes:
    """Drop what the runtime does not need (inferred value_info, node names, doc strings, tool stamps) and give
    internal tensors short names: on a classifier of a few kilobytes the quantizers' long generated names
    ("mul_result1_output_quantized_cast_output") are a sixth of the file. Graph inputs and outputs keep theirs."""
    model = onnx.load_model_from_string(data)
    del model.graph.value_info[:]
    model.graph.doc_string = ""
    kept = [prop for prop in model.metadata_props if prop.key not in _TOOL_METADATA]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    public = {t.name for t in model.graph.input} | {t.name for t in model.graph.output}
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute):
        # Subgraphs (If, Loop, Scan) may read outer tensors by name: renaming safely would mean walking them too.
        public |= {name for node in model.graph.node for name in (*node.input, *node.output)}
        public |= {t.name for t in model.graph.initializer}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        return name if not name or name in public else short.setdefault(name, f"t{len(short)}")

    for initializer in model.graph.initializer:
        initializer.name = rename(initializer.name)
    for node in model.graph.node:
        node.name = ""
        node.doc_string = ""
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
    return model.SerializeToString()


def ensure_smaller(method_label: str, before: bytes, after: bytes) -> None:
    if len(after) >= len(before):
        raise NotApplicable(
            f"{method_label} would not make this model smaller ({len(before):,} bytes before, {len(after):,} "
            "after): its weights are too small for the method's extra tensors to pay off."
        )


def agreement(original: bytes, compressed: bytes, X: np.ndarray) -> float:
    """Share of rows on which both models predict the same label."""
    a, b = runner(original).predict(X), runner(compressed).predict(X)
    return float(np.mean(a.labels == b.labels)) if len(X) else 1.0
