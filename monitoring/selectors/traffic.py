"""The stored production traffic, read column-wise: windows of predictions with their labels, and counts."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Subquery, Sum

from monitoring import batches, pgcopy, storage
from monitoring.models import (
    Deployment,
    Prediction,
    PredictionBatch,
)


@dataclass(frozen=True)
class ProductionWindow:
    X: np.ndarray  # float32, n × n_features
    predicted: np.ndarray  # class labels as strings
    labels: np.ndarray | None  # true labels as strings, only for labelled_only windows
    timestamps: np.ndarray  # datetime64[us], UTC
    request_ids: np.ndarray  # object array of str
    probabilities: np.ndarray | None = None  # float32, n × n_classes; NaN rows where a prediction had none
    predicted_index: np.ndarray | None = None  # int16 index into class_labels
    label_index: np.ndarray | None = None  # int16 index into class_labels (labelled_only)
    batch_ids: np.ndarray | None = None  # int64: the batch each row came in (its version: served_versions)

    def newest(self, n: int) -> ProductionWindow:
        """The last n rows (the window is oldest first), every column cut alike."""
        return ProductionWindow(
            **{f.name: (None if (v := getattr(self, f.name)) is None else v[-n:]) for f in fields(self)}
        )

    def first_timestamp(self) -> datetime:
        return batches.us_to_datetime(int(self.timestamps[0].astype("datetime64[us]").astype(np.int64)))


_STORED_COLUMNS = ("timestamps_us", "features", "predicted", "probabilities", "request_ids")


_BATCH_COLUMNS = ("id", "n_rows", *_STORED_COLUMNS, "columns_sha256")


def stored_columns(batch: PredictionBatch, names: tuple[str, ...] = _STORED_COLUMNS) -> dict[str, memoryview | bytes | None]:
    """{column: raw little-endian bytes} of a batch, from its row or, for a large batch, from its .npz in the
    media store, verified against its sha256 first (storage.BlobIntegrityError, BlobMissingError)."""
    in_media = set(names) & set(batches.NPZ_MEMBERS) if batch.columns_sha256 else set()
    stored = {name: getattr(batch, name) for name in names if name not in in_media}
    return stored | (_columns_in_media(batch.columns_sha256, tuple(in_media)) if in_media else {})


def _columns_in_media(sha256: str, names: tuple[str, ...] = tuple(batches.NPZ_MEMBERS)) -> dict[str, memoryview | None]:
    return batches.stored_columns_from_npz(storage.read_blob(settings.MEDIA_ROOT, sha256), names)


def _with_columns(row: tuple) -> tuple:
    """(id, n_rows, column bytes...) of a _BATCH_COLUMNS row, with the columns kept in the media store read there."""
    *head, sha256 = row
    sha256 = bytes(sha256).decode() if isinstance(sha256, memoryview) else sha256
    if not sha256:
        return tuple(head)
    in_row = dict(zip(_STORED_COLUMNS, head[2:])) | _columns_in_media(sha256)
    return (head[0], head[1], *(in_row[name] for name in _STORED_COLUMNS))


def _read_batches(
    deployment: Deployment, *, start: datetime, end: datetime, ids: list[int] | None, version_id: int | None = None
) -> list:
    """(id, n_rows, column bytes...) of the deployment's batches overlapping [start, end), oldest first; only
    those made by one version when version_id is given."""
    batches = PredictionBatch.objects.live().filter(deployment=deployment, t_min__lt=end, t_max__gte=start)
    if ids is not None:
        batches = batches.filter(pk__in=ids)
    if version_id is not None:
        batches = batches.filter(version_id=version_id)
    if connection.vendor != "postgresql":
        return [_with_columns(row) for row in batches.order_by("t_min", "pk").values_list(*_BATCH_COLUMNS)]
    table = PredictionBatch._meta.db_table
    sql = (
        f"SELECT {', '.join(_BATCH_COLUMNS)} FROM {table} WHERE deployment_id = %s AND t_min < %s AND t_max >= %s"
        f" AND state NOT IN ('{PredictionBatch.State.REJECTED}', '{PredictionBatch.State.EXPIRING}')"
        + (" AND id = ANY(%s)" if ids is not None else "") + (" AND version_id = %s" if version_id is not None else "")
        + " ORDER BY t_min, id"
    )
    params = [deployment.pk, end, start] + ([list(ids)] if ids is not None else [])
    params += [version_id] if version_id is not None else []
    with connection.cursor() as cursor:
        rows = pgcopy.parse_rows(pgcopy.copy_out(cursor.cursor, sql, params))
    return [_with_columns((int.from_bytes(r[0], "big"), int.from_bytes(r[1], "big"), *r[2:])) for r in rows]


def _labelled_rows(deployment: Deployment, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(batch id, row, label index) of the labelled rows in [start, end), through the partial index."""
    rows = Prediction.objects.filter(
        deployment=deployment, timestamp__gte=start, timestamp__lt=end, label_index__isnull=False
    )
    if connection.vendor != "postgresql":
        values = np.array(list(rows.values_list("batch_id", "row", "label_index")), dtype=np.int64).reshape(-1, 3)
        return values[:, 0], values[:, 1], values[:, 2].astype(np.int16)
    sql = (
        f"SELECT batch_id, row, label_index FROM {Prediction._meta.db_table} "
        "WHERE deployment_id = %s AND timestamp >= %s AND timestamp < %s AND label_index IS NOT NULL"
    )
    with connection.cursor() as cursor:
        stream = pgcopy.copy_out(cursor.cursor, sql, [deployment.pk, start, end])
    columns = pgcopy.parse_fixed(stream, [">i8", ">i4", ">i2"])
    return columns["f0"], columns["f1"].astype(np.int64), columns["f2"]


def production_window(
    *, deployment: Deployment, start: datetime, end: datetime, labelled_only: bool = False, limit: int | None = None,
    version_id: int | None = None,
) -> ProductionWindow:
    """Traffic with start <= timestamp < end, oldest first, read from the columnar batches (only the batches one
    version made, with version_id: a rollout's guards compare candidate and active on the same period).

    labelled_only keeps the rows whose true label has arrived and fills `labels`. Each output array is
    allocated once and filled batch by batch (a plain copy when a whole batch is wanted), because at a
    million rows every extra pass over X costs a tenth of a second.
    """
    n_features, classes = deployment.n_features, np.asarray([str(c) for c in deployment.class_labels])
    wanted: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
    if labelled_only:
        wanted = _labelled_by_batch(*_labelled_rows(deployment, start, end))
    stored = _read_batches(
        deployment, start=start, end=end, ids=list(wanted) if wanted is not None else None, version_id=version_id
    )
    lo, hi = batches.datetime_to_us(start), batches.datetime_to_us(end)
    selections = []
    for batch_id, n_rows, t_raw, *_ in stored:
        if wanted is not None:
            take, codes = wanted[batch_id]
        else:
            t = np.frombuffer(t_raw, dtype="<i8")
            take, codes = np.flatnonzero((t >= lo) & (t < hi)), None
        # A whole batch, in order, is a slice: copied without a gather.
        selections.append((slice(None) if len(take) == n_rows else take, len(take), codes))
    n = sum(size for _, size, _ in selections)
    k = len(classes)
    any_probabilities = any(row[5] is not None for row in stored)
    X = np.empty((n, n_features), dtype=np.float32)
    t_out = np.empty(n, dtype=np.int64)
    predicted_index = np.empty(n, dtype=np.int16)
    label_index = np.empty(n, dtype=np.int16) if labelled_only else None
    probabilities = np.full((n, k), np.nan, dtype=np.float32) if any_probabilities else None
    ids = np.empty(n, dtype=object)
    batch_of = np.empty(n, dtype=np.int64)
    at = 0
    for (batch_id, n_rows, t_raw, x_raw, p_raw, proba_raw, ids_raw), (take, size, codes) in zip(stored, selections):
        part = slice(at, at + size)
        t_out[part] = np.frombuffer(t_raw, dtype="<i8")[take]
        X[part] = np.frombuffer(x_raw, dtype="<f4").reshape(n_rows, n_features)[take]
        predicted_index[part] = np.frombuffer(p_raw, dtype="<i2")[take]
        if proba_raw is not None:
            probabilities[part] = np.frombuffer(proba_raw, dtype="<f4").reshape(n_rows, k)[take]
        if label_index is not None:
            label_index[part] = codes
        batch_of[part] = batch_id
        ids[part] = batches.decode_ids(ids_raw, n_rows) if isinstance(take, slice) else np.asarray(
            batches.decode_ids(ids_raw, n_rows), dtype=object
        )[take]
        at += size
    if n and np.any(np.diff(t_out) < 0):  # batches overlap in time: put the rows in time order
        order = np.argsort(t_out, kind="stable")
        X, t_out, predicted_index, ids = X[order], t_out[order], predicted_index[order], ids[order]
        batch_of = batch_of[order]
        label_index = label_index[order] if label_index is not None else None
        probabilities = probabilities[order] if probabilities is not None else None
    if limit is not None:
        X, t_out, predicted_index, ids = X[:limit], t_out[:limit], predicted_index[:limit], ids[:limit]
        batch_of = batch_of[:limit]
        label_index = label_index[:limit] if label_index is not None else None
        probabilities = probabilities[:limit] if probabilities is not None else None
    return ProductionWindow(
        X=X,
        predicted=classes[predicted_index] if k else predicted_index.astype(str),
        labels=classes[label_index] if label_index is not None else None,
        timestamps=batches.as_datetime64(t_out),
        request_ids=ids,
        probabilities=probabilities,
        predicted_index=predicted_index,
        label_index=label_index,
        batch_ids=batch_of,
    )


def served_versions(window: ProductionWindow) -> np.ndarray:
    """The number of the version that served each row of the window (0 where its batch names none)."""
    if window.batch_ids is None or not len(window.batch_ids):
        return np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(window.batch_ids, return_inverse=True)
    number = dict(PredictionBatch.objects.filter(pk__in=unique.tolist()).values_list("pk", "version__number"))
    return np.asarray([number.get(int(b)) or 0 for b in unique], dtype=np.int64)[inverse]


def _labelled_by_batch(batch_ids: np.ndarray, rows: np.ndarray, codes: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{batch id: (rows in order, their label indices)}."""
    order = np.argsort(batch_ids.astype(np.int64) * (1 << 32) + rows)
    batch_ids, rows, codes = batch_ids[order], rows[order], codes[order]
    starts = np.flatnonzero(np.r_[True, batch_ids[1:] != batch_ids[:-1]]) if len(batch_ids) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(batch_ids)]
    return {int(batch_ids[a]): (rows[a:b], codes[a:b]) for a, b in zip(starts, ends)}


def prediction_counts(*, deployment: Deployment, since: datetime) -> tuple[int, datetime | None]:
    """(predictions with timestamp >= since, the latest prediction's time), from batch headers.

    Only batches that straddle `since` have their timestamp column read.
    """
    stored = PredictionBatch.objects.live().filter(deployment=deployment)
    last = stored.order_by("-t_max").values_list("t_max", flat=True).first()
    recent = stored.filter(t_max__gte=since)
    count = sum(recent.filter(t_min__gte=since).values_list("n_rows", flat=True))
    lo = batches.datetime_to_us(since)
    for raw in recent.filter(t_min__lt=since).values_list("timestamps_us", flat=True):  # always in the row
        count += int(np.count_nonzero(np.frombuffer(raw, dtype="<i8") >= lo))
    return count, last


def prediction_counts_for(*, deployment_ids: list[int], since: datetime) -> dict[int, tuple[int, datetime | None]]:
    """prediction_counts for many deployments in three queries, whatever their number (the overview page)."""
    stored = PredictionBatch.objects.live().filter(deployment_id__in=deployment_ids)
    # One probe of batch_newest_idx per deployment: a maximum over every batch was a third of the overview's SQL.
    newest = PredictionBatch.objects.live().filter(deployment=OuterRef("pk")).order_by("-t_max").values("t_max")[:1]
    last = dict(
        Deployment.objects.filter(pk__in=deployment_ids).annotate(last=Subquery(newest)).values_list("pk", "last")
    )
    counts = dict(
        stored.filter(t_min__gte=since).values("deployment_id").annotate(n=Sum("n_rows")).values_list("deployment_id", "n")
    )
    lo = batches.datetime_to_us(since)
    straddling = stored.filter(t_max__gte=since, t_min__lt=since).values_list("deployment_id", "timestamps_us")
    for deployment_id, raw in straddling:
        counts[deployment_id] = counts.get(deployment_id, 0) + int(np.count_nonzero(np.frombuffer(raw, dtype="<i8") >= lo))
    return {pk: (int(counts.get(pk) or 0), last.get(pk)) for pk in deployment_ids}


def deployments_with_pending_batches() -> list[int]:
    return list(
        PredictionBatch.objects.filter(state=PredictionBatch.State.PENDING).values_list("deployment_id", flat=True).distinct()
    )


def batch_for(*, deployment: Deployment, batch_id: int) -> PredictionBatch:
    """One of the deployment's batches, without its columns. Raises PredictionBatch.DoesNotExist."""
    return PredictionBatch.objects.defer(*_STORED_COLUMNS).get(deployment=deployment, pk=batch_id)
