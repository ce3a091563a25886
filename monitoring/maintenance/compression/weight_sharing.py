"""k-means weight sharing: each dense weight tensor becomes a codebook plus one uint8 index per weight.

The graph looks the weights up with Gather(codebook, indices); onnxruntime folds the lookup at session start
(all its inputs are constants), so inference runs on a dense float matrix. An index is 1 byte instead of 4.
No Django here.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.cluster import KMeans

from monitoring.maintenance.compression.base import (
    CompressionReport,
    NotApplicable,
    ensure_smaller,
    replace_initializer,
    require_dense,
)

METHOD = "kmeans"
LABEL = "k-means weight sharing"
DEFAULT_CLUSTERS = 32
MAX_CLUSTERS = 256  # one uint8 index per weight


def check(model: onnx.ModelProto) -> None:
    require_dense(LABEL, model)


def share_weights(onnx_bytes: bytes, calibration: np.ndarray | None = None, *, clusters: int = DEFAULT_CLUSTERS):
    if not 2 <= clusters <= MAX_CLUSTERS:
        raise NotApplicable(f"k-means weight sharing needs 2 to {MAX_CLUSTERS} clusters, not {clusters}.")
    model = onnx.load_model_from_string(onnx_bytes)
    weights = require_dense(LABEL, model)
    for name, W in weights.items():
        values = W.reshape(-1, 1).astype(np.float64)
        k = min(clusters, len(np.unique(values)))
        # Linear initialisation over the weight range (as in Deep Compression): it keeps the rare large weights,
        # which matter most, in clusters of their own; random_state fixes the outcome.
        init = np.linspace(values.min(), values.max(), k).reshape(-1, 1)
        fitted = KMeans(n_clusters=k, init=init, n_init=1, random_state=0).fit(values)
        codebook = fitted.cluster_centers_.ravel().astype(np.float32)
        indices = fitted.labels_.astype(np.uint8).reshape(W.shape)
        inits = [numpy_helper.from_array(codebook, f"{name}__codebook"),
                 numpy_helper.from_array(indices, f"{name}__indices")]
        nodes = [
            helper.make_node("Cast", [f"{name}__indices"], [f"{name}__idx"], to=TensorProto.INT32),
            helper.make_node("Gather", [f"{name}__codebook", f"{name}__idx"], [name], axis=0),
        ]
        replace_initializer(model, name, nodes, inits)
    data = model.SerializeToString()
    ensure_smaller(LABEL, onnx_bytes, data)
    return data, CompressionReport(METHOD, len(onnx_bytes), len(data), {"clusters": clusters, "tensors": len(weights)})
