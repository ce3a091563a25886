"""Low-rank factorisation of dense layers by truncated SVD. No Django here.

A MatMul by W (m × n) becomes a MatMul by A (m × r) then by B (r × n), with A = U_r·S_r and B = V_rᵀ, where r is
the smallest rank keeping `energy` of the squared singular values. A layer is only factorised when
r·(m + n) < m·n, i.e. when the two factors are really smaller than W.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from monitoring.maintenance.compression.base import CompressionReport, NotApplicable, ensure_smaller, require_dense

METHOD = "low_rank"
LABEL = "Low-rank factorisation (SVD)"
DEFAULT_ENERGY = 0.95


def check(model: onnx.ModelProto) -> None:
    weights = require_dense(LABEL, model)
    # Even rank 1 saves nothing on a matrix with a dimension of 1 or 2.
    if not any(sum(W.shape) < W.size for W in weights.values()):
        raise NotApplicable(f"{LABEL} does not apply: every dense layer is too small to factorise.")


def rank_for(singular_values: np.ndarray, energy: float) -> int:
    """The smallest r whose leading singular values hold `energy` of the total squared mass."""
    mass = np.cumsum(singular_values**2) / np.sum(singular_values**2)
    return int(np.searchsorted(mass, energy) + 1)


def factorise(onnx_bytes: bytes, calibration: np.ndarray | None = None, *, energy: float = DEFAULT_ENERGY):
    if not 0 < energy <= 1:
        raise NotApplicable(f"The retained energy must be in (0, 1], not {energy}.")
    model = onnx.load_model_from_string(onnx_bytes)
    weights = require_dense(LABEL, model)
    ranks: dict[str, int] = {}
    new_nodes: list[onnx.NodeProto] = []
    replaced: set[str] = set()
    inits = []
    for node in model.graph.node:
        name = node.input[1] if node.op_type == "MatMul" and len(node.input) > 1 else None
        if name not in weights or name in replaced:
            new_nodes.append(node)
            continue
        W = weights[name].astype(np.float64)
        U, S, Vt = np.linalg.svd(W, full_matrices=False)
        r = rank_for(S, energy)
        if r * sum(W.shape) >= W.size:
            new_nodes.append(node)  # the factors would be larger than W: keep this layer as it is
            continue
        ranks[name] = r
        replaced.add(name)
        inits += [
            numpy_helper.from_array((U[:, :r] * S[:r]).astype(np.float32), f"{name}__A"),
            numpy_helper.from_array(Vt[:r].astype(np.float32), f"{name}__B"),
        ]
        new_nodes += [
            helper.make_node("MatMul", [node.input[0], f"{name}__A"], [f"{name}__low"]),
            helper.make_node("MatMul", [f"{name}__low", f"{name}__B"], list(node.output)),
        ]
    if not ranks:
        raise NotApplicable(
            f"{LABEL} does not apply at {energy:.0%} retained energy: no layer's weights are close enough to low "
            "rank for the two factors to be smaller than the matrix."
        )
    kept = [init for init in model.graph.initializer if init.name not in replaced]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + inits)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    data = model.SerializeToString()
    ensure_smaller(LABEL, onnx_bytes, data)
    return data, CompressionReport(METHOD, len(onnx_bytes), len(data), {"energy": energy, "ranks": ranks})
