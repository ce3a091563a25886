"""Ingestion: production predictions and, later, their true labels. Per-deployment token auth.

The bodies are read with orjson and validated row by row in the services, not by pydantic:
a batch of 10,000 rows is parsed once, and every error names its row and field.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router
from ninja.decorators import decorate_view

from dashboard.api.auth import deployment_for_token, token_auth
from dashboard.api.errors import body_limit, error_responses
from dashboard.api.parsing import json_object_body, request_body_doc
from dashboard.api.schemas import IngestOut, LabelBatchIn, LabelsOut, PredictionBatchIn
from monitoring import services

router = Router(auth=token_auth, tags=["ingestion"])

INGEST_ERRORS = error_responses(400, 401, 403, 409, 413, 422)


@router.post("/deployments/{slug}/predictions", response={200: IngestOut, **INGEST_ERRORS},
             summary="Send a batch of predictions", openapi_extra=request_body_doc(PredictionBatchIn))
@decorate_view(body_limit("DATA_UPLOAD_MAX_MEMORY_SIZE"))
def predictions_ingest(request: HttpRequest, slug: str) -> services.IngestResult:
    """All or nothing: one bad row rejects the batch (422, naming each bad row and field) and stores nothing.
    Retrying a batch is safe: ids already stored with the same content count as duplicates.
    An id stored with different content is a conflict (409). At most MAX_PREDICTION_BATCH rows."""
    deployment = deployment_for_token(request, slug)
    return services.predictions_ingest(deployment=deployment, rows=json_object_body(request, "predictions"))


@router.post("/deployments/{slug}/labels", response={200: LabelsOut, **INGEST_ERRORS},
             summary="Send true labels for stored predictions", openapi_extra=request_body_doc(LabelBatchIn))
@decorate_view(body_limit("DATA_UPLOAD_MAX_MEMORY_SIZE"))
def labels_ingest(request: HttpRequest, slug: str) -> services.LabelResult:
    """All or nothing: an unknown id or class rejects the batch and stores nothing. Sending a label again overwrites it."""
    deployment = deployment_for_token(request, slug)
    return services.labels_ingest(deployment=deployment, rows=json_object_body(request, "labels"))
