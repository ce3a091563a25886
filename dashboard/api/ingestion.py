"""Ingestion: production predictions and, later, their true labels. The deployment's ingestion token, or a
personal or team service token with the operator role (dashboard/api/auth.py IngestionToken).

JSON bodies are read with orjson and validated as columns in monitoring/batches.py, not by pydantic:
a batch of 10,000 rows is checked in a few numpy passes, and every error names its row and field.
Files (CSV or Parquet) go through pyarrow. Every prediction batch is idempotent: see Idempotency-Key.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import File, Header, Query, Router, UploadedFile
from ninja.decorators import decorate_view
from ninja.responses import Status

from dashboard.api.auth import deployment_for_token, ingestion_auth
from dashboard.api.errors import error_responses, file_body
from dashboard.api.parsing import json_object, json_object_body, request_body_doc, uploaded_file
from dashboard.api.schemas import BatchOut, IngestOut, LabelBatchIn, LabelsOut, PredictionBatchIn
from monitoring import batches, selectors, services
from monitoring.models import PredictionBatch

router = Router(auth=ingestion_auth, tags=["ingestion"])

INGEST_ERRORS = error_responses(400, 401, 403, 409, 413, 422)
UPLOAD_ERRORS = error_responses(400, 401, 403, 409, 413, 415, 422)
IDEMPOTENCY_KEY = Header(
    None,
    alias="Idempotency-Key",
    description="Any unique string per batch (a UUID). A retry with the same key is answered with the first "
    "answer and stores nothing; the same key with a different body is refused (422). Without it, a "
    "byte-identical resend counts as the same batch.",
)
PREFER = Header(
    None,
    alias="Prefer",
    description="`respond-async` (RFC 7240): store the batch and leave its ids to the indexer, answering 202 with "
    "`Preference-Applied: respond-async` instead of 201: the request skips the per-row index, most of a large "
    "batch's cost. The price: a reused id rejects the batch a moment later (its status at `Location`, and an "
    "alert) instead of a 409 now. What the serving client sends.",
)


def _respond_async(prefer: str | None) -> bool:
    """Whether the Prefer header (RFC 7240: comma-separated preferences, each with optional parameters) asks
    respond-async."""
    return prefer is not None and any(
        preference.split(";")[0].split("=")[0].strip().lower() == "respond-async" for preference in prefer.split(",")
    )


def _answer(
    request: HttpRequest, response: HttpResponse, slug: str, result: services.IngestResult, *, asked_async: bool = False
) -> Status:
    """201 for a stored batch, 202 for one the indexer still has to take, with its status as `Location`.
    A replay answers with the status of the first answer: the stored result says which it was."""
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    if result.batch_id is None:  # a report of failed calls alone: no batch to look up
        return Status(201, result)
    if asked_async and result.status == PredictionBatch.State.PENDING:
        response["Preference-Applied"] = "respond-async"
    response["Location"] = reverse("api:batch_status", kwargs={"slug": slug, "batch_id": result.batch_id})
    return Status(202 if result.status == PredictionBatch.State.PENDING else 201, result)


VERSION_QUERY = Query(
    None, description="The number of the version that made the predictions, as the JSON batch's \"version\" (also "
    "accepted as a multipart form field named version on an upload). Without it, the version active on arrival is credited.",
)

COLUMNAR_DOC = {
    batches.NPZ_BATCH_TYPE: {
        "schema": {"type": "string", "format": "binary"},
        "description": "The columnar batch (what the serving client sends): an uncompressed .npz (np.savez) with "
        "members ids (uint8, the UTF-8 ids joined by newlines), timestamp_us (int64, µs since the epoch, UTC), "
        "features (float32, n × d), predicted_label (integers or unicode) and optionally probabilities "
        "(float32, n × k); and the client's calls, optionally: latency_us (one number per call timed in this batch, "
        "µs), calls and errors (one integer each; a report of failed calls alone has only these three). The version "
        "and the instance go in the query (?version=3&instance=pod-7).",
    },
}


INSTANCE_QUERY = Query(
    None, description="The serving instance that made the predictions (as the JSON batch's \"instance\")."
)


def _with_columnar(doc: dict) -> dict:
    doc["requestBody"]["content"] |= COLUMNAR_DOC
    return doc


@router.post("/deployments/{slug}/predictions", response={201: IngestOut, 202: IngestOut, **INGEST_ERRORS},
             summary="Send a batch of predictions", openapi_extra=_with_columnar(request_body_doc(PredictionBatchIn)))
def predictions_ingest(
    request: HttpRequest, response: HttpResponse, slug: str, idempotency_key: str | None = IDEMPOTENCY_KEY,
    version: int | None = VERSION_QUERY, instance: str | None = INSTANCE_QUERY, prefer: str | None = PREFER,
) -> Status:
    """All or nothing: one bad row rejects the batch (422, naming each bad row and field) and stores nothing.
    A batch larger than MAX_PREDICTION_BATCH rows or MAX_REQUEST_BYTES gets 413. Ids are unique per
    deployment: a new batch reusing a stored id is a conflict (409). NaN and infinity are rejected unless
    the deployment allows them. An optional top-level `"version": <n>` (or `?version=<n>`) names the version that
    made the predictions (422 if it is not one of this deployment's); without it, the active version is credited.
    The body is JSON, or the columnar batch (`Content-Type: application/x-npz`), which costs both ends a
    fraction of JSON's. 201 with `Location:` the batch's status; a replay answers as the first time. With
    `Prefer: respond-async` the ids are left to the indexer: 202, and a reused id rejects the batch moments
    later (its status at `Location`) instead of a 409 now.

    The serving client also reports its predict calls: `latency_us` (µs, one per call timed in this batch),
    `calls` and `errors` (failed calls logged no rows, so `predictions` may then be empty: the answer has
    `batch_id` null). They feed the rollout guards latency_p95 and error_rate (docs/rollout.md); a bad value is a
    422 naming the field, and nothing is stored."""
    deployment = deployment_for_token(request, slug)
    index_later = _respond_async(prefer)
    if request.content_type == batches.NPZ_BATCH_TYPE:
        result = services.predictions_ingest_columns(
            deployment=deployment, data=request.body, idempotency_key=idempotency_key, version=version,
            instance=instance, index_later=index_later,
        )
    else:
        body = json_object(request, "predictions")
        result = services.predictions_ingest(
            deployment=deployment, rows=body["predictions"], idempotency_key=idempotency_key,
            version=body.get("version", version), calls=body.get("calls"), errors=body.get("errors"),
            latency_us=body.get("latency_us"), instance=body.get("instance", instance), index_later=index_later,
        )
    return _answer(request, response, slug, result, asked_async=index_later)


FILE_BODY = File(
    None,
    description="The file as a multipart form field. Or send the file itself as the request body "
    "(Content-Type: application/vnd.apache.parquet or text/csv), which skips multipart parsing: about a second "
    "per 100 MB.",
)


def _upload_version(request: HttpRequest, query: int | None) -> object:
    """The version named by the query or, in a multipart upload, by a form field; the service refuses (422)
    anything that is not one of the deployment's version numbers."""
    if query is not None:
        return query
    field = request.POST.get("version", "").strip() if request.content_type == "multipart/form-data" else ""
    if not field:
        return None
    return int(field) if field.isdigit() else field


@router.post("/deployments/{slug}/predictions/upload", response={201: IngestOut, 202: IngestOut, **UPLOAD_ERRORS},
             summary="Upload a file of predictions (CSV or Parquet)")
@decorate_view(file_body)
def predictions_upload(
    request: HttpRequest, response: HttpResponse, slug: str, file: UploadedFile | None = FILE_BODY,
    idempotency_key: str | None = IDEMPOTENCY_KEY, version: int | None = VERSION_QUERY,
) -> Status:
    """Columns: `id`, `timestamp` (ISO 8601; naive means UTC), `predicted_label`, one per feature and,
    optionally, `proba_<class>` for every class. Stored as one batch, all or nothing, with the same
    errors and idempotency as the JSON batch. A file over 10,000 rows has its ids checked by the indexer,
    moments later: 202 with `Location:` the batch's status, to poll. At most MAX_UPLOAD_ROWS rows and MAX_UPLOAD_BYTES.
    `version` (query or form field) names the version that made them, as in the JSON batch."""
    deployment = deployment_for_token(request, slug)
    data, filename = uploaded_file(request, file)
    result = services.predictions_upload(
        deployment=deployment, data=data, filename=filename, idempotency_key=idempotency_key,
        version=_upload_version(request, version),
    )
    return _answer(request, response, slug, result)


@router.get("/deployments/{slug}/batches/{batch_id}", response={200: BatchOut, **error_responses(401, 403, 404)},
            url_name="batch_status",
            summary="A prediction batch's status")
def batch_status(request: HttpRequest, slug: str, batch_id: int) -> PredictionBatch:
    """Whether the batch's ids are in the label index yet (pending, indexed) and, if the indexer rejected it,
    why: another batch holds some of its ids (which rows), or its file in the media store could not be read."""
    deployment = deployment_for_token(request, slug)
    try:
        return selectors.batch_for(deployment=deployment, batch_id=batch_id)
    except PredictionBatch.DoesNotExist:
        raise services.NotFound(f"This deployment has no batch {batch_id}.") from None


@router.post("/deployments/{slug}/labels", response={200: LabelsOut, **INGEST_ERRORS},
             summary="Send true labels for stored predictions", openapi_extra=request_body_doc(LabelBatchIn))
def labels_ingest(request: HttpRequest, slug: str) -> services.LabelResult:
    """All or nothing: an unknown id or class rejects the batch (422, naming the row) and stores nothing.
    Sending a label again overwrites it, so a retry is harmless. At most MAX_LABEL_BATCH rows."""
    deployment = deployment_for_token(request, slug)
    return services.labels_ingest(deployment=deployment, rows=json_object_body(request, "labels"))


@router.post("/deployments/{slug}/labels/upload", response={200: LabelsOut, **UPLOAD_ERRORS},
             summary="Upload a file of true labels (CSV or Parquet)")
@decorate_view(file_body)
def labels_upload(request: HttpRequest, slug: str, file: UploadedFile | None = FILE_BODY) -> services.LabelResult:
    """Columns `id` and `label`. All or nothing, like the JSON labels batch; at most MAX_UPLOAD_ROWS rows."""
    deployment = deployment_for_token(request, slug)
    data, filename = uploaded_file(request, file)
    return services.labels_upload(deployment=deployment, data=data, filename=filename)
