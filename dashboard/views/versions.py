"""Versions: a version's page and files, uploading one, approving or rejecting a candidate, rolling back, tags."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard import charts
from dashboard.access import APPROVE, OPERATE, can, get_deployment_for, get_version_for
from dashboard.decisions import Decision, approve_decision, reject_decision, rollback_decision, rollout_decision
from dashboard.forms import DecisionForm, TagForm, VersionUploadForm
from dashboard.views.common import redirect_back, report
from monitoring import selectors, services
from monitoring.models import Deployment, EvaluationRun, ModelVersion
from monitoring.storage import BlobMissingError


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


def posted_stage_rows(data) -> list[dict]:
    """A rollout's stage rows as typed, to show them again when refused."""
    rows = zip(data.getlist("stage_share"), data.getlist("stage_minutes"), data.getlist("stage_predictions"),
               strict=False)
    return [{"share": s, "minutes": m, "predictions": p} for s, m, p in rows if (s + m + p).strip()]


def decide(request: HttpRequest, *, decision: Decision, deployment: Deployment, act, done: str) -> HttpResponse:
    """GET: the decision as a plain form page (the dialog's fallback without JavaScript). POST: carry it out with
    the reason given; a missing reason shows the form again with the service's message, and nothing is written."""
    form = DecisionForm(request.POST or None)
    status = 200
    if request.method == "POST":
        comment = form.cleaned_data["comment"] if form.is_valid() else ""
        try:
            act(comment)
        except services.ValidationFailed as exc:
            about_stages = any(error.get("field") == "stages" for error in exc.errors)
            form.add_error(None if about_stages else "comment", exc.message)
            status = exc.status
        except services.ServiceError as exc:
            report(request, exc)
            return redirect_back(request, _versions_url(deployment.slug))
        else:
            messages.success(request, done)
            return redirect_back(request, _versions_url(deployment.slug))
    context = {"deployment": deployment, "decision": decision, "form": form, "next": request.POST.get("next", ""),
               "stage_rows": posted_stage_rows(request.POST)}
    return render(request, "versions/decision.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def version_approve(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    version = get_version_for(request.user, slug, number, need=APPROVE)
    return decide(
        request, decision=approve_decision(version), deployment=version.deployment,
        act=lambda comment: services.version_approve(version=version, by=request.user, comment=comment),
        done=f"v{number} is now the active version.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def version_reject(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    version = get_version_for(request.user, slug, number, need=APPROVE)
    return decide(
        request, decision=reject_decision(version), deployment=version.deployment,
        act=lambda comment: services.version_reject(version=version, by=request.user, comment=comment),
        done=f"v{number} is rejected.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def deployment_rollback(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=APPROVE)
    decision = rollback_decision(deployment)
    if decision is None:
        messages.error(request, "No earlier version has been in production; there is nothing to roll back to.")
        return redirect(_versions_url(slug))
    target = deployment.rollback_target()
    return decide(
        request, decision=decision, deployment=deployment,
        act=lambda comment: services.deployment_rollback(deployment=deployment, by=request.user, comment=comment),
        done=f"Rolled back: v{target.number} is serving again.",
    )


# The version page's chart: the quality metrics the health chart draws.
VERSION_METRICS = ["accuracy", "f1_macro"]


@login_required
def version_detail(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """One version: where it came from, who decided what about it and why, how it did while it served, its
    files and tags."""
    version = get_version_for(request.user, slug, number)
    deployment = version.deployment
    can_approve = can(request.user, deployment, APPROVE)
    week = deployment.evaluation_window_days
    Source = EvaluationRun.Source
    periods = selectors.version_serving_periods(version=version)
    tz = timezone.get_current_timezone()
    chart = charts.metrics_chart(
        production=selectors.version_metric_series(
            version=version, names=VERSION_METRICS, source=Source.PRODUCTION, window_days=week
        ),
        production_label=f"labelled production, {week} d",
        evaluation_set=selectors.version_metric_series(version=version, names=VERSION_METRICS, source=Source.EVALUATION_SET),
        thresholds=deployment.metric_thresholds,
        tz=tz,
        # No link: the mark is on this version's own page.
        rollouts=[(started, f"v{version.number} serves", "") for started, _ in periods],
    ) if periods else None
    decisions = []
    if can_approve and version.status == ModelVersion.Status.CANDIDATE:
        # The same three as the deployment page's versions table: roll out by the plan (when something serves),
        # approve at once, reject.
        staged = [rollout_decision(version, services.rollout_plan_of(deployment).stages)] if deployment.active_version() is not None else []
        decisions = [*staged, approve_decision(version), reject_decision(version)]
    elif can_approve and version.status == ModelVersion.Status.ACTIVE and (rollback := rollback_decision(deployment)):
        decisions = [rollback]
    active = deployment.active_version()
    context = {
        "deployment": deployment,
        "version": version,
        "active": active,
        "lineage": selectors.version_lineage(version=version),
        "history": selectors.version_history(version=version),
        "periods": periods,
        "chart": chart,
        "training": selectors.describe_training(version, tz),
        "decisions": decisions,
        "can_operate": can(request.user, deployment, OPERATE),
        "can_compare": active is not None and active.pk != version.pk,
        "tag_form": TagForm(),
    }
    return render(request, "versions/detail.html", context)


@login_required
@require_GET
def version_download(request: HttpRequest, slug: str, number: int, file: str) -> HttpResponse:
    """The version's ONNX file (or its training recipe), for the team's viewers and up; the sha256 it is stored
    under is checked as it is read (monitoring/storage.py) and sent as a header."""
    version = get_version_for(request.user, slug, number)
    sha = version.sha256 if file == "model" else version.recipe_sha256
    if not sha:
        raise Http404(f"v{number} has no training recipe: it was uploaded without one.")
    try:
        data = services.blob_read(sha)
    except BlobMissingError:
        raise Http404(f"The stored file of v{number} is missing; ask an administrator to restore it.") from None
    suffix = "onnx" if file == "model" else "skops"
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{slug}-v{number}.{suffix}"'
    response["X-Content-SHA256"] = sha
    return response


@login_required
@require_POST
def version_tag(request: HttpRequest, slug: str, number: int, action: str) -> HttpResponse:
    """Add or remove one tag (operators and up; audited)."""
    version = get_version_for(request.user, slug, number, need=OPERATE)
    form = TagForm(request.POST)
    tag = form.cleaned_data["tag"] if form.is_valid() else request.POST.get("tag", "")
    change = services.version_tag_add if action == "add" else services.version_tag_remove
    try:
        change(version=version, tag=tag, by=request.user)
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"v{number} is tagged {tag}." if action == "add" else f"Removed the tag {tag} from v{number}.")
    return redirect(reverse("version", args=[slug, number]) + "#tags")


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
        "training": [
            line for v in (version, active)
            if v is not None and (line := selectors.describe_training(v, timezone.get_current_timezone()))
        ],
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
