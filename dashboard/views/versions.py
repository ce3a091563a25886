"""Versions: upload a new one, approve or reject a candidate, roll back the active one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dashboard import charts
from dashboard.access import APPROVE, OPERATE, can, get_deployment_for, get_version_for
from dashboard.forms import DecisionForm, VersionUploadForm
from dashboard.views.common import report
from monitoring import selectors, services


def _versions_url(slug: str) -> str:
    return reverse("deployment", args=[slug]) + "#versions"


@login_required
def version_new(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=OPERATE)
    form = VersionUploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        recipe = form.cleaned_data["recipe"]
        try:
            version = services.version_register(
                deployment=deployment,
                data=form.cleaned_data["file"].read(),
                recipe=recipe.read() if recipe else None,
                notes=form.cleaned_data["notes"],
                by=request.user,
            )
        except services.ServiceError as exc:
            form.add_error(None, exc.message)
            for error in exc.errors:
                if error.get("message") and error["message"] != exc.message:
                    form.add_error(None, error["message"])
            status = exc.status
        else:
            if version.status == version.Status.ACTIVE:
                messages.success(request, f"v{version.number} is registered and serving: it is the first version.")
            else:
                messages.success(request, f"v{version.number} is registered as a candidate; an approver can make it active.")
            return redirect(_versions_url(slug))
    elif request.method == "POST":
        status = 400
    return render(request, "deployments/version_new.html", {"deployment": deployment, "form": form}, status=status)


@login_required
@require_POST
def version_approve(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    version = get_version_for(request.user, slug, number, need=APPROVE)
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    try:
        services.version_approve(version=version, by=request.user, comment=comment)
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"v{number} is now the active version.")
    return redirect(_versions_url(slug))


@login_required
@require_POST
def version_reject(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    version = get_version_for(request.user, slug, number, need=APPROVE)
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    try:
        services.version_reject(version=version, by=request.user, comment=comment)
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"v{number} is rejected.")
    return redirect(_versions_url(slug))


@login_required
@require_POST
def deployment_rollback(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=APPROVE)
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    try:
        target = services.deployment_rollback(deployment=deployment, by=request.user, comment=comment)
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Rolled back: v{target.number} is serving again.")
    return redirect(_versions_url(slug))


@login_required
def version_compare(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """The approval page: the candidate against the active version on the same rows, with the evidence to decide.

    It reads stored statistics only; one that is missing or out of date is queued for a worker, and the page
    says so and reloads itself until it is there.
    """
    version = get_version_for(request.user, slug, number)
    deployment = version.deployment
    active = deployment.active_version()
    comparison = None
    if active is not None and active.pk != version.pk:
        stored = services.comparisons_request(candidate=version, active=active)
        comparison = selectors.version_comparison(candidate=version, active=active, stored=stored)
    job = getattr(version, "produced_by", None)
    search = (job.result or {}).get("search") if job is not None else None
    context = {
        "deployment": deployment,
        "version": version,
        "active": active,
        "comparison": comparison,
        "replay": selectors.shadow_replay_for(version=version),
        # Which rows each side learnt from, so a reader can see the comparison's rows are not among them.
        "training": [line for v in (version, active) if v is not None and (line := selectors.describe_training(v))],
        "trained_until": selectors.trained_until([v for v in (version, active) if v is not None]),
        "job": job,
        "search": search,
        "can_approve": can(request.user, deployment, APPROVE),
        "pareto": charts.pareto_chart(
            versions=selectors.version_points(deployment=deployment),
            trials=search["trials"] if search else (),
            highlight=version.number,
        ),
    }
    return render(request, "deployments/version_compare.html", context)
