"""Knowledge distillation of a classifier into a small MLP student. No Django here.

The objective is the seeds': T² · KL(softmax(t/T) ‖ softmax(s/T)), with t the teacher's logits (log-probabilities
for a model that only gives probabilities, e.g. a random forest) and s the student's.

scikit-learn has no KL loss, but its MLPClassifier minimises cross-entropy, and cross-entropy against soft
targets p is KL(p ‖ q) + H(p), where H(p) does not depend on the student. So the student is fitted on every row
repeated once per class, labelled with that class and weighted by the teacher's softened probability of it:
the weighted log-loss is then exactly Σ KL(p_T ‖ q) + const. The fitted network's logits play the role of s/T;
multiplying its output layer by T gives s, the student that serves at temperature 1. (T² only rescales the
gradient, which Adam's step normalisation absorbs, so it changes nothing here.) The result is a plain
MLPClassifier, so skl2onnx converts it with a label and a probability output like any classifier.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from monitoring.maintenance.compression.base import NotApplicable, runner, tidy
from monitoring.maintenance.export import estimator_to_onnx

DEFAULT_TEMPERATURE = 2.0
DEFAULT_HIDDEN = 8  # on the wine forest: 20× smaller and as accurate (bench/compression.py)
# Teacher probabilities are clipped before the log: a forest gives exact zeros, whose log would be -inf.
EPSILON = 1e-4
MIN_ROWS = 20
# Noisy copies of each row, at a tenth of a standard deviation, until the transfer set has TRANSFER_ROWS rows (at
# most MAX_COPIES copies): enough for a small student to settle near the teacher's boundaries without leaving the
# data's region; a large reference set gets none, and training stays a few seconds.
TRANSFER_ROWS = 1000
MAX_COPIES = 4
NOISE_STD = 0.1


@dataclass(frozen=True)
class DistillReport:
    temperature: float
    hidden_units: int
    n_rows: int
    kl_at_temperature: float  # mean KL(p_T ‖ q_T) per row on the transfer set, in nats
    agreement: float  # share of transfer rows where student and teacher predict the same class
    size_before: int
    size_after: int

    @property
    def size_ratio(self) -> float:
        return round(self.size_after / self.size_before, 4)


def transfer_set(X: np.ndarray, *, copies: int, seed: int) -> np.ndarray:
    """X plus `copies` noisy copies of it (gaussian, NOISE_STD feature standard deviations): the teacher labels
    them too, so the student sees the teacher's function around the data, not only on it."""
    rng = np.random.default_rng(seed)
    scale = X.std(axis=0, keepdims=True) * NOISE_STD
    noisy = [X + rng.normal(size=X.shape).astype(np.float32) * scale for _ in range(copies)]
    return np.concatenate([X, *noisy]).astype(np.float32)


def fold_scaler(student: Pipeline) -> MLPClassifier:
    """The MLP with the StandardScaler folded into its first layer: (x - μ)/σ · W + b = x · (W/σ) + (b - (μ/σ)·W).
    One operator and two vectors fewer in the file, same answers."""
    scaler, mlp = student.named_steps["scale"], student.named_steps["mlp"]
    W, b = mlp.coefs_[0], mlp.intercepts_[0]
    mlp.coefs_[0] = W / scaler.scale_[:, None]
    mlp.intercepts_[0] = b - (scaler.mean_ / scaler.scale_) @ W
    return mlp


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the teacher's distribution at temperature T."""
    return softmax(np.log(np.clip(probabilities, EPSILON, 1.0)) / temperature, axis=1)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over rows of KL(p ‖ q), in nats."""
    p, q = np.clip(p, 1e-12, 1.0), np.clip(q, 1e-12, 1.0)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))


def distill(
    teacher: bytes, X: np.ndarray, *, feature_names: list[str], temperature: float = DEFAULT_TEMPERATURE,
    hidden_units: int = DEFAULT_HIDDEN, max_iter: int = 600, seed: int = 0, augment: int | None = None,
) -> tuple[bytes, DistillReport]:
    """Train a StandardScaler + one-hidden-layer MLP student on the teacher's softened answers over X."""
    if temperature <= 0:
        raise NotApplicable(f"The distillation temperature must be positive, not {temperature}.")
    if len(X) < MIN_ROWS:
        raise NotApplicable(f"Distillation needs at least {MIN_ROWS} input rows to learn from; it has {len(X)}.")
    model = runner(teacher)
    if not model.probability_output:
        raise NotApplicable("Distillation needs a teacher that outputs class probabilities; this model gives labels only.")
    if augment is None:
        augment = min(MAX_COPIES, max(0, -(-TRANSFER_ROWS // max(len(X), 1)) - 1))
    X = transfer_set(np.asarray(X, dtype=np.float32), copies=augment, seed=seed)
    predicted = model.predict(X)
    classes = model.class_labels
    targets = soften(predicted.probabilities, temperature)
    n, k = targets.shape
    rows = np.repeat(X, k, axis=0)
    labels = np.tile(np.array(classes), n)
    weights = targets.ravel()
    keep = weights > 1e-6  # a weight of zero adds nothing but time
    student = Pipeline([
        ("scale", StandardScaler()),
        ("mlp", MLPClassifier(hidden_layer_sizes=(hidden_units,), max_iter=max_iter, random_state=seed)),
    ])
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        student.fit(rows[keep], labels[keep], mlp__sample_weight=weights[keep])
    mlp = student.named_steps["mlp"]
    if [str(c) for c in mlp.classes_] != list(classes):
        raise NotApplicable("Distillation needs rows where the teacher gives every class some probability.")
    q_T = student.predict_proba(X)
    kl = kl_divergence(targets, q_T)
    # Serve at temperature 1: the network's logits are s/T, so scale the output layer by T.
    mlp.coefs_[-1] = mlp.coefs_[-1] * temperature
    mlp.intercepts_[-1] = mlp.intercepts_[-1] * temperature
    agreement = float(np.mean(np.asarray(student.predict(X)).astype(str) == predicted.labels))
    data = tidy(estimator_to_onnx(fold_scaler(student), feature_names=feature_names, class_labels=list(classes)))
    return data, DistillReport(
        temperature=temperature, hidden_units=hidden_units, n_rows=int(n), kl_at_temperature=round(kl, 5),
        agreement=round(agreement, 4), size_before=len(teacher), size_after=len(data),
    )


