"""Maintenance jobs: queue one, cancel one, and report progress to the page that polls it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import OPERATE, get_deployment_for, get_job_for, get_version_for
from dashboard.forms import JobForm
from dashboard.views.common import redirect_back, report
from monitoring import services
from monitoring.maintenance.applicability import PARAMS
from monitoring.maintenance.wording import elapsed_words
from monitoring.models import MaintenanceJob


def _jobs_url(slug: str) -> str:
    return reverse("deployment", args=[slug]) + "#jobs"


@login_required
@require_POST
def job_queue(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=OPERATE)
    form = JobForm(request.POST, versions=list(deployment.versions.all()))
    if not form.is_valid():
        messages.error(request, "Choose a version and a job kind.")
        return redirect(_jobs_url(slug))
    version = get_version_for(request.user, slug, form.cleaned_data["version"], need=OPERATE)
    # The form shows every kind's settings as param_<name> fields; the chosen kind's are passed on, and the
    # service checks their bounds.
    wanted = PARAMS.get(form.cleaned_data["kind"], {})
    params = {name: request.POST.get(f"param_{name}", "") for name in wanted}
    try:
        job = services.job_queue(version=version, kind=form.cleaned_data["kind"], by=request.user, params=params)
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Queued job #{job.pk}: {job.get_kind_display()} of v{version.number}.")
    return redirect(_jobs_url(slug))


@login_required
@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_job_for(request.user, job_id, need=OPERATE)
    try:
        services.job_cancel(job=job, by=request.user)
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Job #{job.pk} is cancelled.")
    return redirect_back(request, _jobs_url(job.deployment.slug))


def job_elapsed(job: MaintenanceJob) -> str:
    """How long it has run ("3 min 05 s"), or ran; "" before it starts."""
    if job.started_at is None:
        return ""
    end = job.finished_at or timezone.now()
    return elapsed_words((end - job.started_at).total_seconds())


def job_state(job: MaintenanceJob) -> dict:
    return {
        "elapsed": job_elapsed(job),
        "id": job.pk,
        "status": job.status,
        "status_label": job.get_status_display(),
        "progress": job.progress,
        "message": job.progress_message,
        "error": job.error,
        "finished": job.is_finished,
        "candidate": job.candidate.number if job.candidate_id else None,
    }


@never_cache
@login_required
@require_GET
def job_progress(request: HttpRequest, job_id: int) -> JsonResponse:
    job = get_job_for(request.user, job_id)
    return JsonResponse(job_state(job))
