"""Predictions and ground-truth labels arriving by the API or as files, and indexing them."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from monitoring import alert_keys, background, batches, callstats, indexing, pgcopy, storage, tablefiles, telemetry
from monitoring.models import (
    Alert,
    CallStats,
    Deployment,
    ModelVersion,
    Prediction,
    PredictionBatch,
)
from monitoring.services.alerts import alert_raise
from monitoring.services.blobs import blob_put
from monitoring.services.errors import Conflict, ServiceError, TooLarge, ValidationFailed


@dataclass(frozen=True)
class IngestResult:
    batch_id: int | None  # None: a report of failed calls without rows
    received: int
    created: int
    # True when this answer is the stored one of an earlier request with the same idempotency key.
    replayed: bool = False
    # The batch's PredictionBatch.State: "indexed", or for a large batch "pending" until the indexer has
    # taken its ids (seconds).
    status: str = PredictionBatch.State.PENDING


def _schema(deployment: Deployment) -> batches.Schema:
    return batches.Schema(
        feature_names=[str(name) for name in deployment.feature_names],
        class_labels=[str(label) for label in deployment.class_labels],
        allow_non_finite=deployment.allow_non_finite,
    )


def _replay(*, deployment: Deployment, key: str, fingerprint: str) -> IngestResult | None:
    """The stored answer to the batch with this key; a Conflict if the indexer has since rejected that batch.

    A key sent again with another body is a client bug (a reused or colliding key), not a retry: replaying
    would answer "stored" for rows that never were, so it is refused (422), as the IETF Idempotency-Key draft
    and Stripe do. The body is compared by the fingerprint stored in the batch's result.
    """
    stored = (
        PredictionBatch.objects.filter(deployment=deployment, idempotency_key=key)
        .values_list("pk", "state", "result")
        .first()
    )
    if stored is None:
        return None
    pk, state, result = stored
    # Batches stored before fingerprints were kept have none: they replay as they always did.
    if result.get("fingerprint", fingerprint) != fingerprint:
        raise ValidationFailed(
            f"Idempotency-Key reused with a different body: batch {pk} was stored under this key with other "
            "content. Send new content with a new key; resend the same content to retry."
        )
    if state == PredictionBatch.State.REJECTED:
        raise Conflict(f"Batch {pk} with this key was rejected: {result['message']}", errors=result["errors"])
    return IngestResult(batch_id=pk, received=result["received"], created=result["created"], replayed=True, status=state)


def _check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 200:
        raise ValidationFailed("The Idempotency-Key must be 1 to 200 characters.")
    return key


def predictions_ingest(
    *, deployment: Deployment, rows: list, idempotency_key: str | None = None, version: object = None,
    calls: object = None, errors: object = None, latency_us: object = None, instance: object = None,
    index_later: bool = False,
) -> IngestResult:
    """Store a batch of production predictions as one columnar block, all or nothing.

    A retry is harmless: a batch with the idempotency key of a stored one (by default, a key derived
    from its content) is answered with the stored result and stores nothing. A new batch reusing an
    id already stored for the deployment is a conflict (409) and stores nothing. `version` is the number of
    the version that made the predictions (the serving client sends it); without it, the batch is credited to
    the version active when it arrives. With `index_later` (the client asked `Prefer: respond-async`) the batch
    is stored and left pending for the indexer, as a large one is: the reused-id verdict comes from the indexer.

    `calls`, `errors` and `latency_us` are the client's predict calls (monitoring/callstats.py), stored as one
    CallStats row in the batch's transaction; with them, `rows` may be empty (every call failed). `instance`
    names the serving instance that sent them.
    """
    try:
        return _predictions_ingest(
            deployment=deployment, rows=rows, idempotency_key=idempotency_key, version=version,
            report_fields={"calls": calls, "errors": errors, "latency_us": latency_us}, instance=instance,
            index_later=index_later,
        )
    except ServiceError:
        telemetry.ingest_counted(kind="predictions", rejected=len(rows) if isinstance(rows, list) else 0)
        raise


def _predictions_ingest(
    *, deployment: Deployment, rows: list, idempotency_key: str | None, version: object, report_fields: dict,
    instance: object, index_later: bool,
) -> IngestResult:
    version_id = _version_id(deployment, version)
    instance_name = _instance_name(instance)
    report = _call_report(report_fields)
    if not isinstance(rows, list) or not (rows or report is not None):
        raise ValidationFailed("The batch must be a non-empty list of predictions.")
    if not rows and report is not None and report.calls == 0:
        raise ValidationFailed("A report without predictions must count at least one call; nothing was stored.",
                               errors=[{"field": "calls", "message": "must be at least 1"}])
    if len(rows) > settings.MAX_PREDICTION_BATCH:
        raise TooLarge(f"The batch has {len(rows)} predictions; the limit is {settings.MAX_PREDICTION_BATCH}.")
    key = _check_key(idempotency_key)
    if not rows:
        assert report is not None
        return _calls_store(deployment=deployment, report=report, key=key, version_id=version_id, instance=instance_name)
    try:
        columns = batches.columns_from_rows(rows, _schema(deployment))
    except batches.BatchInvalid as exc:
        raise ValidationFailed(exc.message, errors=exc.errors) from None
    return _api_batch_store(deployment=deployment, columns=columns, key=key, version_id=version_id,
                            report=report, instance=instance_name, index_later=index_later)


def _call_report(fields: dict) -> callstats.CallReport | None:
    try:
        return batches.call_report(**fields)
    except batches.BatchInvalid as exc:
        raise ValidationFailed(exc.message, errors=exc.errors) from None


def _instance_name(instance: object) -> str:
    if instance is None:
        return ""
    if not isinstance(instance, str) or not 1 <= len(instance) <= 128 or not instance.isprintable():
        message = "must be the serving instance's id: 1 to 128 printable characters"
        raise ValidationFailed(f"instance {message}; nothing was stored.", errors=[{"field": "instance", "message": message}])
    return instance


def predictions_ingest_columns(
    *, deployment: Deployment, data: bytes, idempotency_key: str | None = None, version: object = None,
    instance: object = None, index_later: bool = False,
) -> IngestResult:
    """A batch in the columnar format (batches.NPZ_BATCH_TYPE, what the serving client sends): the same rules,
    limits, idempotency, storage and `index_later` as predictions_ingest, without a number formatted or parsed
    on either end."""
    version_id = _version_id(deployment, version)
    instance_name = _instance_name(instance)
    key = _check_key(idempotency_key)
    try:
        batch = batches.batch_from_npz(data, _schema(deployment), max_rows=settings.MAX_PREDICTION_BATCH)
    except batches.BatchTooLarge as exc:
        raise TooLarge(exc.message) from None
    except batches.BatchInvalid as exc:
        raise ValidationFailed(exc.message, errors=exc.errors) from None
    if batch.columns is None:
        assert batch.calls is not None
        return _calls_store(deployment=deployment, report=batch.calls, key=key, version_id=version_id,
                            instance=instance_name)
    return _api_batch_store(deployment=deployment, columns=batch.columns, key=key, version_id=version_id,
                            report=batch.calls, instance=instance_name, index_later=index_later)


def _api_batch_store(
    *, deployment: Deployment, columns: batches.Columns, key: str | None, version_id: int | None,
    index_later: bool = False, report: callstats.CallReport | None = None, instance: str = "",
) -> IngestResult:
    # The batch as validated, not its encoding: the same rows with other spacing, key order or format are the
    # same body. The calls are part of it (a batch without them keeps the fingerprint it always had).
    fingerprint = columns.content_key() + ("" if report is None else _report_key(report))
    return _batch_store(
        deployment=deployment, columns=columns, key=key or fingerprint, fingerprint=fingerprint,
        source=PredictionBatch.Source.API, version_id=version_id, index_later=index_later, report=report,
        instance=instance,
    )


def _report_key(report: callstats.CallReport) -> str:
    return f":calls={report.calls},errors={report.errors},latency={storage.sha256_hex(report.histogram_bytes())[:16]}"


def _calls_store(
    *, deployment: Deployment, report: callstats.CallReport, key: str | None, version_id: int | None, instance: str
) -> IngestResult:
    """A report of failed calls without rows: one CallStats row of its own, idempotent by its key (without one,
    by its content and instance: an identical resend is a retry)."""
    key = key or f"calls{_report_key(report)}:{version_id}:{instance}"
    version_id = version_id or getattr(deployment.active_version(), "pk", None)
    try:
        with transaction.atomic():
            CallStats.objects.create(
                deployment=deployment, version_id=version_id, batch_id=None, idempotency_key=key, instance=instance,
                at=timezone.now(), calls=report.calls, errors=report.errors, latency_histogram=report.histogram_bytes(),
            )
    except IntegrityError:
        if not CallStats.objects.filter(deployment=deployment, idempotency_key=key, batch_id__isnull=True).exists():
            raise
        return IngestResult(batch_id=None, received=0, created=0, replayed=True, status=PredictionBatch.State.INDEXED)
    return IngestResult(batch_id=None, received=0, created=0, status=PredictionBatch.State.INDEXED)


def _version_id(deployment: Deployment, version: object) -> int | None:
    """The id of the deployment's version numbered `version`; a 422 naming the field for anything else."""
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValidationFailed(
            f'"version" must be the number of the version that made these predictions, like 3; got {version!r}.',
            errors=[{"field": "version", "message": "must be an integer version number"}],
        )
    version_id = deployment.versions.filter(number=version).values_list("pk", flat=True).first()
    if version_id is None:
        numbers = list(deployment.versions.order_by("number").values_list("number", flat=True))
        raise ValidationFailed(
            f"{deployment.name} has no version {version} (its versions: {', '.join(f'v{n}' for n in numbers) or 'none'}); "
            "nothing was stored.",
            errors=[{"field": "version", "message": f"not a version of {deployment.slug}"}],
        )
    return version_id


def predictions_upload(
    *, deployment: Deployment, data: bytes, filename: str, idempotency_key: str | None = None, version: object = None
) -> IngestResult:
    """Store a CSV or Parquet file of predictions (columns id, timestamp, predicted_label, the features and
    optionally proba_<class>) as one block, all or nothing. Retries are answered like predictions_ingest.
    `version` as in predictions_ingest."""
    try:
        return _predictions_upload(
            deployment=deployment, data=data, filename=filename, idempotency_key=idempotency_key, version=version
        )
    except ServiceError as exc:
        # A file refused before it was read has no row count; one refused after has it on the error.
        telemetry.ingest_counted(kind="predictions", rejected=getattr(exc, "n_rows", 0))
        raise


def _predictions_upload(
    *, deployment: Deployment, data: bytes, filename: str, idempotency_key: str | None, version: object
) -> IngestResult:
    version_id = _version_id(deployment, version)
    # The version is part of what was sent: the same file credited to another version is another body.
    fingerprint = f"sha256:{storage.sha256_hex(data)}" + ("" if version is None else f":v{version}")
    key = _check_key(idempotency_key) or fingerprint
    if (replay := _replay(deployment=deployment, key=key, fingerprint=fingerprint)) is not None:
        return replay
    schema = _schema(deployment)
    try:
        table = batches.read_table(
            data, filename=filename, choose=lambda names: batches.table_columns(names, schema), limits=_file_limits()
        )
        columns = batches.columns_from_table(table, schema)
    except batches.BatchInvalid as exc:
        raise ValidationFailed(exc.message, errors=exc.errors) from None
    except tablefiles.FileTooLarge as exc:
        raise TooLarge(exc.message) from None
    try:
        return _batch_store(
            deployment=deployment, columns=columns, key=key, fingerprint=fingerprint,
            source=PredictionBatch.Source.UPLOAD, version_id=version_id,
        )
    except ServiceError as exc:
        exc.n_rows = len(columns)
        raise


def _file_limits() -> tablefiles.FileLimits:
    """What an uploaded file may hold, checked before it is decoded (monitoring/tablefiles.py)."""
    return tablefiles.FileLimits(max_rows=settings.MAX_UPLOAD_ROWS, max_decoded_bytes=settings.MAX_UPLOAD_UNCOMPRESSED_BYTES)


# Batches up to this size write their index rows in the request (a reused id is a 409 at once), unless the
# client asked to have them indexed later; larger ones, file uploads, leave them to the indexer
# (monitoring/indexing.py). At 10,000 rows the index costs the request 30–70 ms; at a million, seconds.
INDEX_IN_REQUEST_UP_TO = 10_000


def _batch_store(
    *, deployment: Deployment, columns: batches.Columns, key: str, fingerprint: str, source: str,
    version_id: int | None = None, index_later: bool = False, report: callstats.CallReport | None = None,
    instance: str = "",
) -> IngestResult:
    """Store the batch's columns as one row, and its index rows with it when it is small and not `index_later`.

    Replays are found by the unique key when the insert fails, not by a query before it: retries are rare
    and the common path then costs one round trip less.
    """
    _refuse_future(columns)
    n = len(columns)
    index_now = n <= INDEX_IN_REQUEST_UP_TO and not index_later
    state = PredictionBatch.State.INDEXED if index_now else PredictionBatch.State.PENDING
    now = timezone.now()
    result = {"received": n, "created": n, "fingerprint": fingerprint}
    fields = {
        "deployment_id": deployment.pk,
        "idempotency_key": key,
        "source": source,
        "state": state,
        "n_rows": n,
        "n_features": columns.features.shape[1],
        "result": result,
        "received_at": now,
        "indexed_at": now if index_now else None,
        "version_id": version_id,  # None: the version active now (_batch_copy, _batch_orm)
    }
    try:
        with transaction.atomic():
            fields |= _column_fields(columns)
            batch_id, stored_version_id = _batch_copy(fields, columns) if _is_postgres() else _batch_orm(fields, columns)
            if report is not None:  # the batch's calls, in its transaction: both are stored or neither
                CallStats.objects.create(
                    deployment_id=deployment.pk, version_id=stored_version_id, batch_id=batch_id, instance=instance,
                    at=batches.us_to_datetime(columns.timestamps_us.max()), calls=report.calls, errors=report.errors,
                    latency_histogram=report.histogram_bytes(),
                )
            if index_now:
                indexing.write_rows(
                    deployment_id=deployment.pk, batch_id=batch_id, request_ids=columns.request_ids,
                    timestamps_us=columns.timestamps_us.astype(np.int64),
                )
            else:
                # robust: the batch is stored whatever happens to the broker; the beat sweep indexes it then.
                _index_soon(deployment.pk)
    except IntegrityError:
        # Either a retry (the batch's key is taken: answer as the first time), or some ids are.
        if (replay := _replay(deployment=deployment, key=key, fingerprint=fingerprint)) is not None:
            return replay
        if taken := indexing.taken_ids(deployment.pk, columns.request_ids):
            raise Conflict(
                f"{len(taken)} id(s) were already stored by another batch; nothing was stored. "
                "Resend a batch with its Idempotency-Key (or byte-identical content) to retry it.",
                errors=indexing.conflict_errors(columns.request_ids, taken),
            ) from None
        raise
    telemetry.ingest_counted(kind="predictions", accepted=n)  # not a replay: those rows were counted the first time
    return IngestResult(batch_id=batch_id, received=n, created=n, status=state)


def _refuse_future(columns: batches.Columns) -> None:
    """Refuse a batch with timestamps past the server's clock by more than INGEST_FUTURE_TOLERANCE_SECONDS:
    a client clock running ahead. Refused rather than clamped: a clamped row would claim a time nobody measured,
    and the client can only fix its clock if told (docs/ingestion.md, "Clock skew")."""
    tolerance = settings.INGEST_FUTURE_TOLERANCE_SECONDS
    now_us = int(timezone.now().timestamp() * 1_000_000)
    ahead = np.flatnonzero(columns.timestamps_us > now_us + tolerance * 1_000_000)
    if not len(ahead):
        return
    worst_s = (int(columns.timestamps_us[ahead].max()) - now_us) / 1_000_000
    raise ValidationFailed(
        f"{len(ahead)} prediction(s) are timestamped in the future, up to {worst_s:,.0f} s past the server's clock "
        f"({timezone.now().isoformat(timespec='seconds')}); at most {tolerance} s ahead is accepted. Is this "
        "client's clock set right (NTP)? Nothing was stored.",
        errors=[
            {"row": int(row), "field": "timestamp",
             "message": f"{(int(columns.timestamps_us[row]) - now_us) / 1_000_000:,.0f} s in the future"}
            for row in ahead[: batches.MAX_ERRORS]
        ],
    )


def _column_fields(columns: batches.Columns) -> dict[str, object]:
    """The batch row's column fields: the columns themselves, or for a large batch its timestamps and the
    sha256 of the .npz holding the rest (see PredictionBatch.columns_sha256)."""
    timestamps = {"timestamps_us": _little_endian(columns.timestamps_us, "<i8")}
    if columns.nbytes >= settings.BATCH_COLUMNS_IN_MEDIA_FROM_BYTES:
        empty = dict.fromkeys(["features", "predicted", "request_ids"], b"")
        return timestamps | empty | {"probabilities": None, "columns_sha256": blob_put(batches.columns_npz(columns))}
    return timestamps | {
        "features": _little_endian(columns.features, "<f4"),
        "predicted": _little_endian(columns.predicted, "<i2"),
        "probabilities": None if columns.probabilities is None else _little_endian(columns.probabilities, "<f4"),
        "request_ids": columns.joined_ids,
        "columns_sha256": "",
    }


def _index_soon(deployment_id: int) -> None:
    """After commit, queue an indexer for the deployment, unless one is queued and has not started yet.

    Under steady traffic that is one task per indexer run instead of one per batch (a Redis round trip
    instead of a publish per request). The task clears the flag before it reads the pending batches, so a
    batch stored after that queues the next one. The flag expires, in case a queued task is lost; the beat
    sweep (index_pending_all_task) covers that minute.
    """
    background.enqueue_unless_pending(
        "workers.tasks.index_batches_task", deployment_id,
        flag=indexing.pending_flag(deployment_id), expires_s=60, robust=True,
    )


def batches_index(*, deployment_id: int, wait: bool = True, drain_s: float = 0.0) -> indexing.IndexOutcome:
    """Index the deployment's pending batches now, raising an alert with each rejection (in its transaction).
    drain_s: keep taking batches that arrive meanwhile for that long (indexing.index_pending)."""

    def alert(batch: PredictionBatch) -> None:
        # Counted as accepted when it was stored (202), and now as rejected too: the indexer refused its ids.
        telemetry.ingest_counted(kind="predictions", rejected=batch.n_rows)
        alert_raise(
            deployment=Deployment.objects.get(pk=deployment_id),
            kind=Alert.Kind.BATCH_REJECTED,
            dedup_key=alert_keys.BATCH_REJECTED_KEY,
            title=f"Prediction batch {batch.pk} was rejected",
            message=batch.result["message"],
        )

    return indexing.index_pending(deployment_id=deployment_id, wait=wait, on_reject=alert, drain_s=drain_s)


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


# Column types of the batch row, in COPY order (monitoring_predictionbatch as created by the migrations).
_BATCH_COLUMNS = [
    ("id", "int8"), ("deployment_id", "int8"), ("version_id", "int8"), ("idempotency_key", "text"),
    ("source", "text"), ("state", "text"), ("n_rows", "int4"), ("n_features", "int4"), ("t_min", "timestamptz"),
    ("t_max", "timestamptz"), ("timestamps_us", "bytea"), ("features", "bytea"), ("predicted", "bytea"),
    ("probabilities", "bytea"), ("request_ids", "bytea"), ("result", "jsonb"), ("received_at", "timestamptz"),
    ("indexed_at", "timestamptz"), ("columns_sha256", "text"),
]


def _batch_copy(fields: dict, columns: batches.Columns) -> tuple[int, int | None]:
    """The batch row as one binary COPY: no hex-escaped bytea, no formatted timestamps. (id, version id)."""
    import orjson

    batch_table = PredictionBatch._meta.db_table
    timestamps_us = columns.timestamps_us.astype(np.int64)
    values = fields | {
        "t_min": int(timestamps_us.min()), "t_max": int(timestamps_us.max()),
        "result": orjson.dumps(fields["result"]), "received_at": batches.datetime_to_us(fields["received_at"]),
        "indexed_at": None if fields["indexed_at"] is None else batches.datetime_to_us(fields["indexed_at"]),
    }
    # copy_expert is psycopg2's own: wrap_database_errors turns its errors into Django's (IntegrityError).
    with connection.cursor() as cursor, connection.wrap_database_errors:
        # One round trip for the batch's id and the version serving now.
        cursor.execute(
            f"SELECT nextval(pg_get_serial_sequence(%s, 'id')), (SELECT id FROM {ModelVersion._meta.db_table} "
            "WHERE deployment_id = %s AND status = %s LIMIT 1)",
            [batch_table, fields["deployment_id"], ModelVersion.Status.ACTIVE],
        )
        batch_id, active_id = cursor.fetchone()
        values["id"], values["version_id"] = batch_id, fields["version_id"] or active_id
        row = pgcopy.one_row([(values[name], kind) for name, kind in _BATCH_COLUMNS])
        cursor.copy_expert(
            f"COPY {batch_table} ({', '.join(name for name, _ in _BATCH_COLUMNS)}) FROM STDIN (FORMAT binary)",
            row, 1 << 20,  # 1 MB CopyData messages; positional for Django's debug cursor
        )
    return batch_id, values["version_id"]


def _little_endian(array: np.ndarray, dtype: str) -> memoryview:
    """The array's bytes as stored (see PredictionBatch), without a copy when it is already in that layout."""
    return memoryview(np.ascontiguousarray(array, dtype=dtype)).cast("B")


def _batch_orm(fields: dict, columns: batches.Columns) -> tuple[int, int | None]:
    """SQLite (the embedded demo): the ORM."""
    fields = dict(fields)
    version_id = fields.pop("version_id") or getattr(Deployment.objects.get(pk=fields["deployment_id"]).active_version(), "pk", None)
    batch = PredictionBatch.objects.create(
        **fields,
        version_id=version_id,
        t_min=batches.us_to_datetime(columns.timestamps_us.min()),
        t_max=batches.us_to_datetime(columns.timestamps_us.max()),
    )
    return batch.pk, version_id


def _row_error(*, row: int, field: str, message: str) -> dict[str, object]:
    return {"row": row, "field": field, "message": message}


@dataclass(frozen=True)
class LabelResult:
    received: int
    updated: int


def labels_ingest(*, deployment: Deployment, rows: list) -> LabelResult:
    """Attach ground-truth labels to stored predictions by id, all or nothing. Sending a label again overwrites it."""
    if not isinstance(rows, list) or not rows:
        raise ValidationFailed("The batch must be a non-empty list of labels.")
    if len(rows) > settings.MAX_LABEL_BATCH:
        telemetry.ingest_counted(kind="labels", rejected=len(rows))
        raise TooLarge(f"The batch has {len(rows)} labels; the limit is {settings.MAX_LABEL_BATCH}.")
    return _labels_from_rows(deployment, rows)


class _WantedLabel(NamedTuple):
    row: int  # in the request
    code: int  # the class index


class _UnknownLabel(NamedTuple):
    row: int
    request_id: str


@dataclass(frozen=True)
class _LabelWrite:
    updated: int
    unknown: list[_UnknownLabel]  # labels naming no stored prediction (then nothing was updated)


def _labels_from_rows(deployment: Deployment, rows: list) -> LabelResult:
    try:
        result = _labels_checked_and_stored(deployment, rows)
    except ServiceError:
        telemetry.ingest_counted(kind="labels", rejected=len(rows))
        raise
    telemetry.ingest_counted(kind="labels", accepted=result.updated)
    return result


def _labels_checked_and_stored(deployment: Deployment, rows: list) -> LabelResult:
    classes = [str(label) for label in deployment.class_labels]
    index = {label: i for i, label in enumerate(classes)}
    errors: list[dict] = []
    wanted: dict[str, _WantedLabel] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(_row_error(row=i, field="", message="must be an object"))
            continue
        request_id, label = row.get("id"), row.get("label")
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)) or str(request_id) == "":
            errors.append(_row_error(row=i, field="id", message="must be the id of a stored prediction"))
        elif label is None or isinstance(label, (bool, dict, list)) or str(label) not in index:
            errors.append(_row_error(row=i, field="label", message=f"must be one of {classes}"))
        elif str(request_id) in wanted and wanted[str(request_id)].code != index[str(label)]:
            errors.append(_row_error(row=i, field="id", message=f"id {request_id!r} appears twice with different labels (also row {wanted[str(request_id)].row})"))
        else:
            wanted.setdefault(str(request_id), _WantedLabel(row=i, code=index[str(label)]))
        if len(errors) >= 100:
            break
    if errors:
        raise ValidationFailed(f"{len(errors)} label(s) are invalid; nothing was stored.", errors=errors)
    ids = list(wanted)
    return _labels_store(
        deployment=deployment, ids=ids, rows=[wanted[i].row for i in ids],
        codes=np.array([wanted[i].code for i in ids], dtype=np.int16), received=len(rows),
    )


def _labels_store(
    *, deployment: Deployment, ids: list[str], rows: list[int], codes: np.ndarray, received: int
) -> LabelResult:
    """Label the predictions `ids` with class indices `codes`; `rows` are their rows in the request, for errors."""
    # Labels join on the index: the batches accepted a moment ago must be in it first.
    batches_index(deployment_id=deployment.pk)
    now = timezone.now()
    with transaction.atomic():
        if _is_postgres():
            write = _labels_copy(deployment=deployment, ids=ids, rows=rows, codes=codes, now=now)
        else:
            write = _labels_orm(deployment=deployment, ids=ids, rows=rows, codes=codes, now=now)
        if write.unknown:
            # Raising inside the transaction undoes the update: a batch with one unknown id stores nothing.
            raise ValidationFailed(
                f"{len(write.unknown)} label(s) name no stored prediction; nothing was stored.",
                errors=[
                    _row_error(row=label.row, field="id", message=f"no prediction with id {label.request_id!r}")
                    for label in write.unknown[:100]
                ],
            )
    return LabelResult(received=received, updated=write.updated)


def _labels_copy(
    *, deployment: Deployment, ids: list[str], rows: list[int], codes: np.ndarray, now: datetime
) -> _LabelWrite:
    """Labels through a temporary table: one COPY and one UPDATE ... FROM, whatever the batch size."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(
        pa.table({"row": pa.array(rows, type=pa.int64()), "request_id": pa.array(ids, type=pa.string()),
                  "label_index": pa.array(codes, type=pa.int16())}),
        buffer, pacsv.WriteOptions(include_header=False),
    )
    buffer.seek(0)
    table = Prediction._meta.db_table
    with connection.cursor() as cursor, connection.wrap_database_errors:
        # ON COMMIT DROP and TRUNCATE: the table lives for this transaction, even when a caller's transaction
        # ingests several label batches.
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS wk_labels_in (row integer, request_id text, label_index smallint) ON COMMIT DROP"
        )
        cursor.execute("TRUNCATE wk_labels_in")
        cursor.copy_expert("COPY wk_labels_in FROM STDIN WITH (FORMAT csv)", buffer)
        # The UPDATE itself says which labels it stored. A second query for the unknown ones would see a later
        # snapshot (READ COMMITTED): predictions committed in between would look known though the UPDATE had
        # missed them, and those labels were answered 200 and lost (bench/load.py, 25 of 73,800).
        cursor.execute(
            f"UPDATE {table} p SET label_index = l.label_index, labelled_at = %s FROM wk_labels_in l "
            "WHERE p.deployment_id = %s AND p.request_id = l.request_id RETURNING l.row",
            [now, deployment.pk],
        )
        labelled = np.array([row for (row,) in cursor.fetchall()], dtype=np.int64)
    unknown_at = np.flatnonzero(~np.isin(np.asarray(rows, dtype=np.int64), labelled))
    unknown = [_UnknownLabel(row=rows[i], request_id=ids[i]) for i in unknown_at]
    return _LabelWrite(updated=len(labelled), unknown=unknown)


def _labels_orm(
    *, deployment: Deployment, ids: list[str], rows: list[int], codes: np.ndarray, now: datetime
) -> _LabelWrite:
    known: set[str] = set()
    for start in range(0, len(ids), 500):  # SQLite allows at most 999 parameters per statement
        known |= set(
            Prediction.objects.filter(deployment=deployment, request_id__in=ids[start : start + 500]).values_list("request_id", flat=True)
        )
    unknown = [
        _UnknownLabel(row=row, request_id=request_id) for row, request_id in zip(rows, ids) if request_id not in known
    ]
    if unknown:
        return _LabelWrite(updated=0, unknown=unknown)
    updated = 0
    for code in np.unique(codes):
        chosen = [request_id for request_id, c in zip(ids, codes) if c == code]
        for start in range(0, len(chosen), 500):
            updated += Prediction.objects.filter(deployment=deployment, request_id__in=chosen[start : start + 500]).update(
                label_index=int(code), labelled_at=now
            )
    return _LabelWrite(updated=updated, unknown=[])


def labels_upload(*, deployment: Deployment, data: bytes, filename: str) -> LabelResult:
    """Labels from a CSV or Parquet file with columns id and label, all or nothing."""
    import pyarrow as pa

    try:
        table = batches.read_table(data, filename=filename, choose=batches.label_columns, limits=_file_limits())
    except batches.BatchInvalid as exc:
        raise ValidationFailed(exc.message, errors=exc.errors) from None
    except tablefiles.FileTooLarge as exc:
        raise TooLarge(exc.message) from None
    ids = table.column("id").cast(pa.string()).to_pylist()
    labels = table.column("label").cast(pa.string()).to_pylist()
    rows = [{"id": i, "label": label} for i, label in zip(ids, labels)]
    if not rows:
        raise ValidationFailed("The file has no rows.")
    return _labels_from_rows(deployment, rows)
