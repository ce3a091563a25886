"""The reference profile: everything a drift check needs from the reference data, computed once and stored.

A check never re-reads or re-sorts the reference dataset: it loads this profile (one content-addressed blob)
and compares the current window with it. Numeric columns keep their sorted values, so KS and Wasserstein are
exact (equal to scipy's on the values kept); bins, moments, missing counts and distinct counts come from the whole
reference, and a row sample for the domain classifier is precomputed. No Django here.

The profile's size is bounded: a wide reference keeps, per feature, the values of one fixed-seed row sample
(`values_per_feature`), so 500,000 rows x 1,000 features store 100,000 values each (400 MB of float32), not 2 GB.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitoring.drift import numeric
from monitoring.drift.categorical import counts_of

PROFILE_FORMAT = 1
# PSI and Jensen-Shannon use this many reference-quantile bins (deciles: the usual PSI convention).
QUANTILE_BINS = 10
# The domain classifier trains on at most this many rows per side: its ROC-AUC is then known to about +-0.005,
# far finer than the 0.55 verdict threshold, and training stays within seconds on two cores.
SAMPLE_ROWS = 20_000
SAMPLE_SEED = 0
# The sorted values a profile keeps, over all features: 100M float32 values = 400 MB. A reference with fewer
# values (1M rows x 20 features, say) is kept whole; a wider one keeps a row sample of each feature.
PROFILE_MAX_VALUES = 100_000_000
# ... but never fewer than this many per feature: against 100,000 reference values, sampling moves a normalised
# Wasserstein by about 0.005 (vs its 0.1 threshold) and a KS D by about 0.004.
MIN_VALUES_PER_FEATURE = 100_000
# Columns are sorted this many at a time from one contiguous (transposed) block: reading one column of a
# row-major matrix touches a cache line per value, 64 columns share them. 500k rows x 64 x 4 B = 128 MB at most.
BUILD_CHUNK_FEATURES = 64


@dataclass(frozen=True)
class FeatureProfile:
    name: str
    sorted_values: np.ndarray  # finite values, ascending, in the dataset's own dtype (float32 is lossless here)
    n_missing: int
    mean: float
    std: float
    n_unique: int
    inner_edges: np.ndarray  # reference-quantile bin edges (deduplicated), of the whole reference
    bin_counts: np.ndarray  # whole-reference counts in those bins
    n_values: int = -1  # finite values in the whole reference (>= len(sorted_values) when they are a sample)

    def __post_init__(self) -> None:
        if self.n_values < 0:
            object.__setattr__(self, "n_values", len(self.sorted_values))

    @property
    def n(self) -> int:
        return len(self.sorted_values)


@dataclass(frozen=True)
class ReferenceStats:
    """What drift checks compare a window against, built once per reference dataset and model (stored as the
    blob of a monitoring.models.ReferenceProfile row)."""

    feature_names: list[str]
    n_rows: int
    features: list[FeatureProfile]
    sample: np.ndarray  # up to SAMPLE_ROWS reference rows, for the multivariate (domain classifier) check
    sample_labels: np.ndarray | None = None  # true labels of those rows, when the reference is labelled
    predicted_counts: dict = field(default_factory=dict)  # the model's predicted class on the reference: counts
    sorted_scores: np.ndarray | None = None  # the model's top-class probability on the reference, ascending

    def to_bytes(self) -> bytes:
        """An uncompressed .npz: sorted floats barely compress, and a check should not pay to inflate them."""
        header = {
            "format": PROFILE_FORMAT,
            "feature_names": self.feature_names,
            "n_rows": self.n_rows,
            "features": [
                {"name": f.name, "n_missing": f.n_missing, "mean": f.mean, "std": f.std, "n_unique": f.n_unique,
                 "n_values": f.n_values}
                for f in self.features
            ],
            "predicted_counts": [[k, v] for k, v in self.predicted_counts.items()],
        }
        arrays = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "values": np.concatenate([f.sorted_values for f in self.features]) if self.features else np.empty(0),
            "offsets": np.cumsum([0] + [f.n for f in self.features]).astype(np.int64),
            "edge_offsets": np.cumsum([0] + [len(f.inner_edges) for f in self.features]).astype(np.int64),
            "edges": np.concatenate([f.inner_edges for f in self.features]) if self.features else np.empty(0),
            "bin_counts": np.concatenate([f.bin_counts for f in self.features]) if self.features else np.empty(0),
            "sample": self.sample,
        }
        if self.sample_labels is not None:
            arrays["sample_labels"] = np.asarray(self.sample_labels).astype(str)
        if self.sorted_scores is not None:
            arrays["sorted_scores"] = self.sorted_scores
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceStats:
        with _ArraysIn(data) as archive:
            header = json.loads(archive["header"].tobytes())
            if header.get("format") != PROFILE_FORMAT:
                raise ValueError(f"unknown reference profile format {header.get('format')!r}")
            values, offsets = archive["values"], archive["offsets"]
            edges, edge_offsets, bins = archive["edges"], archive["edge_offsets"], archive["bin_counts"]
            features = []
            for j, meta in enumerate(header["features"]):
                e0, e1 = edge_offsets[j], edge_offsets[j + 1]
                features.append(
                    FeatureProfile(
                        name=meta["name"],
                        sorted_values=values[offsets[j] : offsets[j + 1]],
                        n_missing=meta["n_missing"],
                        mean=meta["mean"],
                        std=meta["std"],
                        n_unique=meta["n_unique"],
                        inner_edges=edges[e0:e1],
                        # one more bin than inner edges per feature
                        bin_counts=bins[e0 + j : e1 + j + 1],
                        # profiles stored before sampling existed kept every value
                        n_values=meta.get("n_values", int(offsets[j + 1] - offsets[j])),
                    )
                )
            return cls(
                feature_names=header["feature_names"],
                n_rows=header["n_rows"],
                features=features,
                sample=archive["sample"],
                sample_labels=archive["sample_labels"] if "sample_labels" in archive.files else None,
                predicted_counts={k: v for k, v in header["predicted_counts"]},
                sorted_scores=archive["sorted_scores"] if "sorted_scores" in archive.files else None,
            )


class _ArraysIn:
    """The arrays of an uncompressed .npz as read-only views into its bytes: a 400 MB profile then costs 400 MB
    in memory, not twice that (np.load copies every member out of the archive). Compressed members, and files
    written by anything but np.savez, fall back to np.load."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._archive = zipfile.ZipFile(io.BytesIO(data))
        self.files = [name.removesuffix(".npy") for name in self._archive.namelist()]
        self._fallback: Any = None  # np.load's NpzFile, opened only for a compressed archive

    def __enter__(self) -> _ArraysIn:
        return self

    def __exit__(self, *exc) -> None:
        self._archive.close()
        if self._fallback is not None:
            self._fallback.close()

    def __getitem__(self, name: str) -> np.ndarray:
        info = self._archive.getinfo(name + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            if self._fallback is None:
                self._fallback = np.load(io.BytesIO(self._data), allow_pickle=False)
            return np.asarray(self._fallback[name])
        # A stored member starts after its local header: 30 bytes plus the name and the extra field.
        local = self._data[info.header_offset : info.header_offset + 30]
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        member = io.BytesIO(self._data[start : start + min(info.file_size, 1 << 16)])
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(member)
        if dtype.hasobject:
            raise ValueError("a reference profile holds no Python objects")
        count = int(np.prod(shape))
        array = np.frombuffer(self._data, dtype=dtype, count=count, offset=start + member.tell())
        return array.reshape(shape, order="F" if fortran_order else "C")


def feature_profile(name: str, column: np.ndarray, kept_rows: np.ndarray | None = None) -> FeatureProfile:
    """One column's profile; `kept_rows` (sorted row indices) limits the stored values to a row sample."""
    finite = np.sort(column[np.isfinite(column)])
    as64 = finite.astype(np.float64, copy=False)
    edges = numeric.quantile_edges(as64, QUANTILE_BINS)
    kept = finite
    if kept_rows is not None:
        sample = column[kept_rows]
        kept = np.sort(sample[np.isfinite(sample)])
    return FeatureProfile(
        name=name,
        sorted_values=kept,
        n_missing=int(len(column) - len(finite)),
        mean=float(as64.mean()) if len(as64) else 0.0,
        std=float(as64.std()) if len(as64) else 0.0,
        n_unique=int(np.count_nonzero(np.diff(as64)) + 1) if len(as64) else 0,
        inner_edges=edges,
        bin_counts=numeric.binned_counts(as64, edges),
        n_values=len(finite),
    )


def build_profile(
    X: np.ndarray,
    *,
    feature_names: list[str],
    labels: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    values_per_feature: int | None = None,
) -> ReferenceStats:
    """Profile a reference matrix (n_rows x n_features). `predicted`/`scores` are the model's outputs on X.

    `values_per_feature` caps the sorted values kept per feature (default: PROFILE_MAX_VALUES shared out, at
    least MIN_VALUES_PER_FEATURE); above it every feature keeps the same fixed-seed sample of rows.
    """
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise ValueError(f"reference has shape {list(X.shape)}; expected n_rows x {len(feature_names)}")
    rows = _sample_rows(len(X), SAMPLE_ROWS)
    cap = values_per_feature or max(PROFILE_MAX_VALUES // max(len(feature_names), 1), MIN_VALUES_PER_FEATURE)
    kept_rows = _sample_rows(len(X), cap) if len(X) > cap else None
    features = []
    for j0 in range(0, len(feature_names), BUILD_CHUNK_FEATURES):
        block = np.ascontiguousarray(X[:, j0 : j0 + BUILD_CHUNK_FEATURES].T)
        features += [feature_profile(feature_names[j0 + k], block[k], kept_rows) for k in range(len(block))]
        del block
    return ReferenceStats(
        feature_names=list(feature_names),
        n_rows=len(X),
        features=features,
        sample=np.ascontiguousarray(X[rows]),
        sample_labels=None if labels is None else np.asarray(labels).astype(str)[rows],
        predicted_counts=counts_of(np.asarray(predicted).astype(str)) if predicted is not None else {},
        sorted_scores=None if scores is None else np.sort(np.asarray(scores, dtype=np.float64)),
    )


def _sample_rows(n: int, size: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    # Fixed seed and sorted indices: the same reference always gives the same sample.
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(n, size, replace=False))
