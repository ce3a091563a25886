"""Alerts and maintenance jobs. Bearer token or session."""


from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Query, Router
from ninja.pagination import paginate
from ninja.responses import Status

from dashboard.access import OPERATE, VIEW, get_deployment_for, get_job_for, get_version_for
from dashboard.api.auth import management_auth, user_of
from dashboard.api.errors import error_responses
from dashboard.api.pagination import Pages
from dashboard.api.reports import AlertFilters
from dashboard.api.schemas import AlertOut, JobIn, JobOut
from monitoring import selectors, services
from monitoring.models import Alert, MaintenanceJob
from monitoring.services import Conflict

router = Router(auth=management_auth)

@router.get("/deployments/{slug}/alerts", response={200: list[AlertOut], **error_responses(401, 404)},
            tags=["alerts"], summary="List alerts")
@paginate(Pages)
def alert_list(request: HttpRequest, slug: str, filters: Query[AlertFilters]) -> QuerySet[Alert]:
    """Newest first; `unresolved=true` keeps only open and acknowledged ones. As CSV: `/alerts.csv`."""
    return filters.apply(get_deployment_for(user_of(request), slug, need=VIEW))


@router.get("/deployments/{slug}/jobs", response={200: list[JobOut], **error_responses(401, 404)},
            tags=["jobs"], summary="List maintenance jobs")
@paginate(Pages)
def job_list(request: HttpRequest, slug: str) -> QuerySet[MaintenanceJob]:
    """Newest first."""
    deployment = get_deployment_for(user_of(request), slug, need=VIEW)
    return selectors.jobs_for(deployment=deployment).select_related("deployment")


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
