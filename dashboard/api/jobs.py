"""Alerts and maintenance jobs. Session auth."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router
from ninja.responses import Status

from dashboard.access import OPERATE, VIEW, get_deployment_for, get_job_for, get_version_for
from dashboard.api.auth import session_auth, user_of
from dashboard.api.errors import error_responses
from dashboard.api.schemas import AlertOut, JobIn, JobOut
from monitoring import selectors, services
from monitoring.models import Alert, MaintenanceJob
from monitoring.services import Conflict

router = Router(auth=session_auth)

# A page is enough for a dashboard or a script polling for news; older rows stay in the web UI.
MAX_LIST = 1000


def _limit() -> int:
    return Query(100, ge=1, le=MAX_LIST, description="At most this many, newest first")


@router.get("/deployments/{slug}/alerts", response={200: list[AlertOut], **error_responses(401, 404)},
            tags=["alerts"], summary="List alerts")
def alert_list(request: HttpRequest, slug: str, unresolved: bool = False, limit: int = _limit()) -> list[Alert]:
    """Newest first; `unresolved=true` keeps only open and acknowledged ones."""
    deployment = get_deployment_for(user_of(request), slug, need=VIEW)
    return list(selectors.alerts_for(deployment=deployment, unresolved_only=unresolved)[:limit])


@router.get("/deployments/{slug}/jobs", response={200: list[JobOut], **error_responses(401, 404)},
            tags=["jobs"], summary="List maintenance jobs")
def job_list(request: HttpRequest, slug: str, limit: int = _limit()) -> list[MaintenanceJob]:
    deployment = get_deployment_for(user_of(request), slug, need=VIEW)
    return list(selectors.jobs_for(deployment=deployment).select_related("deployment")[:limit])


@router.post("/deployments/{slug}/jobs", response={201: JobOut, **error_responses(401, 403, 404, 409, 422)},
             tags=["jobs"], summary="Queue a maintenance job")
def job_queue(request: HttpRequest, slug: str, payload: JobIn) -> Status:
    """Needs the operator role. Compression or retraining runs on a worker and produces a candidate
    version for an approver to decide on. Poll GET /jobs/{id} for progress."""
    user = user_of(request)
    if payload.source_version is None:
        deployment = get_deployment_for(user, slug, need=OPERATE)
        version = deployment.active_version()
        if version is None:
            raise Conflict("The deployment has no active version; name a source_version.")
    else:
        version = get_version_for(user, slug, payload.source_version, need=OPERATE)
    job = services.job_queue(version=version, kind=payload.kind, params=payload.params, by=user)
    return Status(201, job)


@router.get("/jobs/{job_id}", response={200: JobOut, **error_responses(401, 404)}, tags=["jobs"],
            summary="Get a job's status and progress")
def job_detail(request: HttpRequest, job_id: int) -> MaintenanceJob:
    return get_job_for(user_of(request), job_id, need=VIEW)
