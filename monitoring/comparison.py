"""Comparing a candidate with the active version on the same rows: the statistics behind the approval page.

Pure: numpy arrays of class indices (or labels) in, dataclasses out. No Django, no onnxruntime.

Every statistic here depends on the rows only through the table of (truth, active, candidate) class counts: at
most (k+1)^3 cells whatever the number of rows (k classes, plus one code for "not a label"). The paired bootstrap
therefore resamples that table with a multinomial draw instead of resampling rows: drawing n rows with replacement
and counting them into the table *is* a multinomial draw with the cells' shares as probabilities, so the two give
the same distribution of resampled tables, at O(resamples x cells) instead of O(resamples x rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import sparse
from scipy.stats import binomtest

from monitoring.metrics import encode

# 2,000 paired resamples: the 95 % interval's end points move by well under 0.005 F1 between seeds.
BOOTSTRAP_RESAMPLES = 2000
# Resamples are drawn this many table cells at a time (resamples x cells, int64): 32 MB whatever the class count.
CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class McNemar:
    only_active_right: int  # rows the active version gets right and the candidate wrong
    only_candidate_right: int
    p_value: float  # exact two-sided test on the discordant pairs; 1.0 when there are none


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class ClassChange:
    label: str
    support: int
    recall_active: float
    recall_candidate: float
    f1_active: float
    f1_candidate: float


@dataclass(frozen=True)
class Comparison:
    n_rows: int
    accuracy_active: float
    accuracy_candidate: float
    f1_active: float
    f1_candidate: float
    mcnemar: McNemar
    f1_delta: Interval  # candidate minus active, macro F1, paired bootstrap 95 % interval
    agreement: float  # share of rows where both predict the same label
    per_class: list[ClassChange]

    @property
    def accuracy_delta(self) -> float:
        return self.accuracy_candidate - self.accuracy_active

    def as_dict(self) -> dict:
        """Plain JSON types, for storing; from_dict() gives back an equal Comparison."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Comparison:
        return cls(
            **{key: data[key] for key in ("n_rows", "accuracy_active", "accuracy_candidate", "f1_active",
                                          "f1_candidate", "agreement")},
            mcnemar=McNemar(**data["mcnemar"]),
            f1_delta=Interval(**data["f1_delta"]),
            per_class=[ClassChange(**change) for change in data["per_class"]],
        )


@dataclass(frozen=True)
class ClassTable:
    """The non-empty cells of the (truth, active, candidate) count table, one entry per cell.

    Codes are class indices 0..k-1; k stands for any value that is not one of the k labels (never right).
    """

    k: int
    truth: np.ndarray  # int64, one code per cell
    active: np.ndarray
    candidate: np.ndarray
    count: np.ndarray  # int64 rows in the cell, all > 0

    @property
    def n_rows(self) -> int:
        return int(self.count.sum())


def class_table(y: np.ndarray, active: np.ndarray, candidate: np.ndarray, k: int) -> ClassTable:
    """Count rows of class indices (-1 or anything outside 0..k-1 meaning "not a label") into a ClassTable."""
    arrays = [np.asarray(a, dtype=np.int64) for a in (y, active, candidate)]
    if not len(arrays[0]) == len(arrays[1]) == len(arrays[2]):
        raise ValueError("the two versions must be compared on the same rows")
    size = k + 1
    t, a, c = (np.where((codes >= 0) & (codes < k), codes, k) for codes in arrays)
    flat = (t * size + a) * size + c
    # A dense bincount while the table is small (a 10-class table has 1,331 cells); a sort for many classes.
    if size**3 <= CHUNK_CELLS:
        counts = np.bincount(flat, minlength=size**3)
        cells = np.flatnonzero(counts)
        counts = counts[cells]
    else:
        cells, counts = np.unique(flat, return_counts=True)
    return ClassTable(
        k=k, truth=cells // (size * size), active=(cells // size) % size, candidate=cells % size,
        count=counts.astype(np.int64),
    )


def _f1(tp: np.ndarray, true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per-class F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (true + predicted); 0 for a class absent from both."""
    denominator = true + predicted
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _class_sums(table: ClassTable) -> sparse.csr_matrix:
    """cells x 5k 0/1 matrix: counts @ it gives per class [true, predicted by active, right by active,
    predicted by candidate, right by candidate]. Code k (not a label) belongs to no class."""
    k, cells = table.k, len(table.count)
    groups = [
        table.truth,
        table.active,
        np.where(table.active == table.truth, table.active, k),
        table.candidate,
        np.where(table.candidate == table.truth, table.candidate, k),
    ]
    row_parts, column_parts = [], []
    for g, codes in enumerate(groups):
        keep = np.flatnonzero(codes < k)
        row_parts.append(keep)
        column_parts.append(g * k + codes[keep])
    rows, columns = np.concatenate(row_parts), np.concatenate(column_parts)
    return sparse.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(cells, 5 * k))


def _macro_f1_pair(sums: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(macro F1 of active, of candidate) from per-class sums shaped (..., 5k), absent classes counting 0."""
    true, predicted_a, right_a, predicted_c, right_c = (sums[..., g * k:(g + 1) * k] for g in range(5))
    return _f1(right_a, true, predicted_a).mean(axis=-1), _f1(right_c, true, predicted_c).mean(axis=-1)


def _table_sums(table: ClassTable) -> np.ndarray:
    """Per-class sums of the table itself, exact integers (as float64), shaped (5k,)."""
    return np.asarray(_class_sums(table).T @ table.count.astype(np.float64)).ravel()


def table_bootstrap_deltas(table: ClassTable, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Macro-F1(candidate) - macro-F1(active) in each of `resamples` multinomial resamples of the table:
    O(resamples x cells), never O(rows)."""
    k, n = table.k, table.n_rows
    if n == 0 or k == 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    shares = table.count / n
    membership = _class_sums(table).T.tocsr()  # 5k x cells
    per_chunk = max(1, CHUNK_CELLS // len(table.count))
    deltas = []
    for start in range(0, resamples, per_chunk):
        counts = rng.multinomial(n, shares, size=min(per_chunk, resamples - start))  # resamples x cells
        sums = np.asarray(membership @ counts.T.astype(np.float64)).T  # resamples x 5k
        f1_a, f1_c = _macro_f1_pair(sums, k)
        deltas.append(f1_c - f1_a)
    return np.concatenate(deltas)


def _interval(estimate: float, deltas: np.ndarray) -> Interval:
    if len(deltas) == 0:
        return Interval(0.0, 0.0, 0.0)
    low, high = np.percentile(deltas, [2.5, 97.5])  # the percentile interval, 95 % two-sided
    return Interval(estimate, float(low), float(high))


def bootstrap_table_f1_delta(
    table: ClassTable, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> Interval:
    """Macro-F1(candidate) - macro-F1(active), with a percentile 95 % interval from resamples of the table."""
    f1_a, f1_c = _macro_f1_pair(_table_sums(table), table.k)
    return _interval(float(f1_c - f1_a), table_bootstrap_deltas(table, resamples=resamples, seed=seed))


def mcnemar_table(table: ClassTable) -> McNemar:
    """McNemar's exact test: under 'same accuracy', each discordant row is a fair coin."""
    known = table.truth < table.k
    a_right, c_right = known & (table.active == table.truth), known & (table.candidate == table.truth)
    b = int(table.count[a_right & ~c_right].sum())
    c = int(table.count[~a_right & c_right].sum())
    p = 1.0 if b + c == 0 else float(binomtest(min(b, c), b + c, 0.5).pvalue)
    return McNemar(b, c, p)


def per_class_table(table: ClassTable, labels: Sequence[str]) -> list[ClassChange]:
    sums = _table_sums(table)
    k = table.k
    true, predicted_a, right_a, predicted_c, right_c = (sums[g * k:(g + 1) * k] for g in range(5))
    f1_a, f1_c = _f1(right_a, true, predicted_a), _f1(right_c, true, predicted_c)
    return [
        ClassChange(
            str(label), int(true[i]),
            float(right_a[i] / true[i]) if true[i] else 0.0, float(right_c[i] / true[i]) if true[i] else 0.0,
            float(f1_a[i]), float(f1_c[i]),
        )
        for i, label in enumerate(labels)
    ]


def compare_table(table: ClassTable, labels: Sequence[str]) -> Comparison:
    """Everything the approval page shows, from the (truth, active, candidate) table of two versions' answers."""
    labels = [str(label) for label in labels]
    if len(labels) != table.k:
        raise ValueError("the table was counted over a different set of labels")
    n = table.n_rows
    known = table.truth < table.k
    right_a = int(table.count[known & (table.active == table.truth)].sum())
    right_c = int(table.count[known & (table.candidate == table.truth)].sum())
    f1_a, f1_c = _macro_f1_pair(_table_sums(table), table.k)
    return Comparison(
        n_rows=n,
        accuracy_active=right_a / n if n else 0.0,
        accuracy_candidate=right_c / n if n else 0.0,
        f1_active=float(f1_a),
        f1_candidate=float(f1_c),
        mcnemar=mcnemar_table(table),
        f1_delta=bootstrap_table_f1_delta(table),
        agreement=int(table.count[table.active == table.candidate].sum()) / n if n else 1.0,
        per_class=per_class_table(table, labels),
    )


def _indices(
    labels: Sequence[str], y: np.ndarray, active: np.ndarray, candidate: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class indices of three arrays of labels (compared as strings); -1 for a value that is no label."""
    names = [str(label) for label in labels]
    return encode(np.asarray(y), names), encode(np.asarray(active), names), encode(np.asarray(candidate), names)


def compare(y: np.ndarray, active: np.ndarray, candidate: np.ndarray, labels: Sequence[str]) -> Comparison:
    """compare_table() for arrays of labels (compared as strings); a value outside `labels` is never right."""
    if not len(y) == len(active) == len(candidate):
        raise ValueError("the two versions must be compared on the same rows")
    return compare_table(class_table(*_indices(labels, y, active, candidate), len(labels)), labels)


def mcnemar(y: np.ndarray, active: np.ndarray, candidate: np.ndarray) -> McNemar:
    """McNemar's exact test on arrays of labels, over whatever labels they hold."""
    labels = sorted({str(v) for v in np.concatenate([np.asarray(a).astype(str) for a in (y, active, candidate)])})
    return mcnemar_table(class_table(*_indices(labels, y, active, candidate), len(labels)))


def bootstrap_f1_delta(
    y: np.ndarray, active: np.ndarray, candidate: np.ndarray, labels: Sequence[str], *,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
) -> Interval:
    """Macro-F1(candidate) - macro-F1(active) over `labels`, with the table bootstrap's 95 % interval."""
    table = class_table(*_indices(labels, y, active, candidate), len(labels))
    return bootstrap_table_f1_delta(table, resamples=resamples, seed=seed)


def row_bootstrap_deltas(
    y: np.ndarray, active: np.ndarray, candidate: np.ndarray, labels: Sequence[str], *,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
) -> tuple[float, np.ndarray]:
    """(estimate, resampled deltas) of the row-level paired bootstrap the table method replaced: it builds
    resamples x rows index matrices.

    Not used by the app. Kept as the reference the table bootstrap is tested against
    (tests/monitoring/test_comparison.py) and as bench/compare_page.py's baseline.
    """
    y_c, a_c, c_c = (np.where(codes < 0, len(labels), codes) for codes in _indices(labels, y, active, candidate))
    k = len(labels)

    def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        f1s = [
            _f1(np.sum((truth == c) & (predicted == c), axis=-1), np.sum(truth == c, axis=-1),
                np.sum(predicted == c, axis=-1))
            for c in range(k)
        ]
        return np.mean(np.stack(f1s, axis=-1), axis=-1)

    estimate = float(macro_f1(y_c, c_c) - macro_f1(y_c, a_c))
    if len(y_c) == 0:
        return estimate, np.zeros(0)
    rng = np.random.default_rng(seed)
    deltas = []
    # In chunks of 200 resamples: a resamples x rows index matrix (1.6 GB of int64 at a million rows).
    for start in range(0, resamples, 200):
        idx = rng.integers(0, len(y_c), size=(min(200, resamples - start), len(y_c)))
        deltas.append(macro_f1(y_c[idx], c_c[idx]) - macro_f1(y_c[idx], a_c[idx]))
    return estimate, np.concatenate(deltas)


def bootstrap_f1_delta_rows(
    y: np.ndarray, active: np.ndarray, candidate: np.ndarray, labels: Sequence[str], *,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
) -> Interval:
    """The row-level bootstrap's interval (see row_bootstrap_deltas)."""
    return _interval(*row_bootstrap_deltas(y, active, candidate, labels, resamples=resamples, seed=seed))


def pareto_front(points: Sequence[tuple[float, float, float]]) -> list[int]:
    """Indices of the points (size, latency, f1) that no other point dominates: smaller-or-equal size and latency
    and higher-or-equal F1, strictly better in one."""
    front = []
    for i, (s, l, f) in enumerate(points):  # noqa: E741  (size, latency, F1, as the docstring names them)
        dominated = any(
            s2 <= s and l2 <= l and f2 >= f and (s2 < s or l2 < l or f2 > f)
            for j, (s2, l2, f2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front
