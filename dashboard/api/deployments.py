"""Managing deployments: versions and their approval, datasets, and ingestion tokens. Session auth."""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import File, Form, Router, UploadedFile
from ninja.pagination import paginate
from ninja.responses import Status

from dashboard.access import APPROVE, OPERATE, VIEW, get_deployment_for, get_team_for, get_version_for
from dashboard.api.auth import management_auth, user_of
from dashboard.api.errors import error_responses
from dashboard.api.pagination import Pages
from dashboard.api.schemas import (
    DatasetOut,
    DecisionIn,
    DeploymentIn,
    DeploymentOut,
    RetentionIn,
    RetentionOut,
    TokenCreatedOut,
    TokenIn,
    TokenOut,
    VersionOut,
)
from monitoring import selectors, services
from monitoring.models import ApiToken, Dataset, Deployment, ModelVersion

router = Router(auth=management_auth)

# Reading needs a session (401), and a role on the deployment's team: outsiders get 404, not 403.
READ_ERRORS = error_responses(401, 404)
WRITE_ERRORS = error_responses(401, 403, 404, 422)


# ---------------------------------------------------------------- deployments


@router.get("/deployments", response={200: list[DeploymentOut], **error_responses(401)}, tags=["deployments"],
            summary="List your deployments")
@paginate(Pages)
def deployment_list(request: HttpRequest) -> list[Deployment]:
    """Every deployment of the teams you belong to."""
    return list(selectors.deployments_visible_to(user=user_of(request)))


@router.post("/deployments", response={201: DeploymentOut, **error_responses(401, 403, 404, 409, 422)},
             tags=["deployments"], summary="Create a deployment")
def deployment_create(request: HttpRequest, payload: DeploymentIn) -> Status:
    """Needs the operator role on the team. The schema (features, classes) is fixed from here on:
    every version and every prediction must fit it."""
    team = get_team_for(user_of(request), payload.team, need=OPERATE)
    deployment = services.deployment_create(
        team=team,
        name=payload.name,
        slug=payload.slug,
        description=payload.description,
        feature_names=payload.feature_names,
        class_labels=[str(label) for label in payload.class_labels],
        metric_thresholds=payload.metric_thresholds,
        allow_non_finite=payload.allow_non_finite,
        require_distinct_approver=payload.require_distinct_approver,
        by=user_of(request),
    )
    return Status(201, deployment)


@router.get("/deployments/{slug}", response={200: DeploymentOut, **READ_ERRORS}, tags=["deployments"],
            summary="Get a deployment")
def deployment_detail(request: HttpRequest, slug: str) -> Deployment:
    return get_deployment_for(user_of(request), slug, need=VIEW)


@router.post("/deployments/{slug}/rollback", response={200: VersionOut, **error_responses(401, 403, 404, 409, 422)},
             tags=["versions"], summary="Roll back to the previous active version")
def deployment_rollback(request: HttpRequest, slug: str, payload: DecisionIn) -> ModelVersion:
    """Needs the approver role. Re-activates the version that served before the current one; returns it."""
    deployment = get_deployment_for(user_of(request), slug, need=APPROVE)
    return services.deployment_rollback(deployment=deployment, by=user_of(request), comment=payload.comment)


@router.get("/deployments/{slug}/retention", response={200: RetentionOut, **READ_ERRORS}, tags=["deployments"],
            summary="What the deployment keeps, and the next purge")
def retention_get(request: HttpRequest, slug: str) -> RetentionOut:
    deployment = get_deployment_for(user_of(request), slug, need=VIEW)
    return RetentionOut.of(selectors.retention_summary(deployment=deployment, now=timezone.now()))


@router.put("/deployments/{slug}/retention", response={200: RetentionOut, **WRITE_ERRORS}, tags=["deployments"],
            summary="Set how long predictions and drift reports are kept")
def retention_set(request: HttpRequest, slug: str, payload: RetentionIn) -> RetentionOut:
    """Needs the approver role. Audited. A shorter retention deletes at the next purge (nightly); the metric series
    is never deleted."""
    deployment = get_deployment_for(user_of(request), slug, need=APPROVE)
    services.deployment_retention_configure(
        deployment=deployment, predictions_days=payload.retain_predictions_days,
        reports_days=payload.retain_reports_days, by=user_of(request),
    )
    return RetentionOut.of(selectors.retention_summary(deployment=deployment, now=timezone.now()))


# ---------------------------------------------------------------- versions


@router.get("/deployments/{slug}/versions", response={200: list[VersionOut], **READ_ERRORS}, tags=["versions"],
            summary="List model versions")
@paginate(Pages)
def version_list(request: HttpRequest, slug: str) -> list[ModelVersion]:
    """Newest first."""
    deployment = get_deployment_for(user_of(request), slug, need=VIEW)
    return selectors.versions_list(deployment=deployment)


@router.post("/deployments/{slug}/versions", response={201: VersionOut, **error_responses(401, 403, 404, 413, 422)},
             tags=["versions"], summary="Upload a model version (ONNX)")
def version_upload(
    request: HttpRequest,
    slug: str,
    file: File[UploadedFile],
    recipe: File[UploadedFile | None] = None,
    notes: Form[str] = "",
) -> Status:
    """Needs the operator role. `file` is the ONNX classifier; it must take one float tensor
    [batch, n_features] fitting the deployment's schema. `recipe` is an optional skops file of the
    scikit-learn estimator, which makes the version retrainable. The first version becomes active;
    later ones are candidates until an approver decides. Bodies above MAX_MODEL_UPLOAD_BYTES get 413."""
    deployment = get_deployment_for(user_of(request), slug, need=OPERATE)
    version = services.version_register(
        deployment=deployment,
        data=file.read(),
        recipe=recipe.read() if recipe is not None else None,
        notes=notes,
        by=user_of(request),
    )
    return Status(201, version)


@router.post("/deployments/{slug}/versions/{number}/approve",
             response={200: VersionOut, **error_responses(401, 403, 404, 409, 422)}, tags=["versions"],
             summary="Approve a candidate version")
def version_approve(request: HttpRequest, slug: str, number: int, payload: DecisionIn) -> ModelVersion:
    """Needs the approver role. The candidate becomes active; the active version is retired (kept for rollback).
    When the deployment has require_distinct_approver (the default), whoever uploaded the candidate or queued the
    job that made it gets 403: someone else must approve it."""
    version = get_version_for(user_of(request), slug, number, need=APPROVE)
    return services.version_approve(version=version, by=user_of(request), comment=payload.comment)


@router.post("/deployments/{slug}/versions/{number}/reject",
             response={200: VersionOut, **error_responses(401, 403, 404, 409, 422)}, tags=["versions"],
             summary="Reject a candidate version")
def version_reject(request: HttpRequest, slug: str, number: int, payload: DecisionIn) -> ModelVersion:
    """Needs the approver role and a reason (`comment`)."""
    version = get_version_for(user_of(request), slug, number, need=APPROVE)
    return services.version_reject(version=version, by=user_of(request), comment=payload.comment)


# ---------------------------------------------------------------- datasets


@router.get("/deployments/{slug}/datasets", response={200: list[DatasetOut], **READ_ERRORS}, tags=["datasets"],
            summary="List datasets")
@paginate(Pages)
def dataset_list(request: HttpRequest, slug: str) -> list[Dataset]:
    deployment = get_deployment_for(user_of(request), slug, need=VIEW)
    return list(deployment.datasets.select_related("deployment", "created_by"))


@router.post("/deployments/{slug}/datasets", response={201: DatasetOut, **error_responses(401, 403, 404, 413, 422)},
             tags=["datasets"], summary="Upload a dataset (CSV or Parquet)")
def dataset_upload(
    request: HttpRequest,
    slug: str,
    file: File[UploadedFile],
    kind: Form[Literal["reference", "evaluation"]],
    name: Form[str] = "",
) -> Status:
    """Needs the operator role. The file (CSV with a header row, or Parquet) has a column for every feature
    (any order) and, optionally, a `label` column; an evaluation set needs labels. The upload becomes the
    deployment's current dataset of its kind. Errors name the line (CSV) or row (Parquet) and column at fault.
    At most MAX_UPLOAD_ROWS rows and MAX_UPLOAD_BYTES (413)."""
    deployment = get_deployment_for(user_of(request), slug, need=OPERATE)
    dataset = services.dataset_upload(
        deployment=deployment, kind=kind, data=file.read(), filename=file.name or "", name=name, by=user_of(request)
    )
    return Status(201, dataset)


# ---------------------------------------------------------------- ingestion tokens


@router.get("/deployments/{slug}/tokens", response={200: list[TokenOut], **error_responses(401, 403, 404)},
            tags=["tokens"], summary="List ingestion tokens")
@paginate(Pages)
def token_list(request: HttpRequest, slug: str) -> list[ApiToken]:
    """Needs the operator role. Secrets are never shown again; only the prefix identifies a token."""
    deployment = get_deployment_for(user_of(request), slug, need=OPERATE)
    return list(deployment.api_tokens.select_related("created_by").order_by("-created_at"))


@router.post("/deployments/{slug}/tokens", response={201: TokenCreatedOut, **error_responses(401, 403, 404, 422)},
             tags=["tokens"], summary="Create an ingestion token")
def token_create(request: HttpRequest, slug: str, payload: TokenIn) -> Status:
    """Needs the operator role. The response holds the whole token, once: store it now."""
    deployment = get_deployment_for(user_of(request), slug, need=OPERATE)
    token, plaintext = services.token_create(deployment=deployment, name=payload.name, by=user_of(request))
    token.token = plaintext  # for this response only; the plaintext is never saved
    return Status(201, token)


@router.delete("/deployments/{slug}/tokens/{prefix}", response={200: TokenOut, **error_responses(401, 403, 404)},
               tags=["tokens"], summary="Revoke an ingestion token")
def token_revoke(request: HttpRequest, slug: str, prefix: str) -> ApiToken:
    """Needs the operator role. Revoking twice is harmless."""
    deployment = get_deployment_for(user_of(request), slug, need=OPERATE)
    token = get_object_or_404(deployment.api_tokens.select_related("deployment"), prefix=prefix)
    return services.token_revoke(token=token, by=user_of(request))
