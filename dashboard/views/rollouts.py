"""Rollout controls on the deployment page (docs/rollout.md): start a candidate's rollout with the deployment's
plan, and pause, resume, advance now or abort the live one. Approvers only; the services audit each."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.access import APPROVE, get_deployment_for, get_version_for
from dashboard.decisions import rollout_decision
from dashboard.forms import DecisionForm, RolloutPlanInput
from dashboard.views.common import report
from dashboard.views.versions import decide
from monitoring import selectors, services


def _rollout_url(slug: str) -> str:
    return reverse("deployment", args=[slug]) + "#rollout"


def _comment(request: HttpRequest) -> str:
    form = DecisionForm(request.POST)
    return form.cleaned_data["comment"] if form.is_valid() else ""


@login_required
@require_http_methods(["GET", "POST"])
def rollout_start(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """Approve a candidate into a staged rollout, with a reason: the same dialog and no-JS form as approve."""
    version = get_version_for(request.user, slug, number, need=APPROVE)
    plan = services.rollout_plan_of(version.deployment).stages
    override, problem = None, None
    if request.method == "POST":
        try:
            override = _override(request, plan)
        except services.ValidationFailed as exc:
            problem = exc

    def start(comment: str) -> None:
        if problem is not None:
            raise problem
        services.rollout_start(version=version, by=request.user, comment=comment, stages=override)

    how = "by the deployment's plan" if override is None else "by the stages you gave (" + " → ".join(
        f"{stage['share'] * 100:g} %" for stage in override) + ")"
    return decide(
        request, decision=rollout_decision(version, plan), deployment=version.deployment, act=start,
        done=f"v{number} is rolling out {how}; the guards decide each stage.",
    )


def _override(request: HttpRequest, plan: list[dict]) -> list[dict] | None:
    """The stages the dialog posted when they differ from the plan (None: the plan's). Typing errors are a
    ValidationFailed on "stages", so the dialog's page shows them beside the stage rows."""
    if "stage_share" not in request.POST:
        return None
    typed = RolloutPlanInput(request.POST)
    stages = typed.stages()
    if typed.errors:
        message = " ".join(typed.errors)
        raise services.ValidationFailed(message, errors=[{"field": "stages", "message": message}])
    return None if stages == services.rollout_stages_validate(plan) else stages


# The controls, each at d/<slug>/rollout/<action> (dashboard/views/urls.py), with what the approver is told.
CONTROLS = {
    "pause": "Paused: the stage holds until you resume (a guard breach still aborts).",
    "resume": "Resumed: the guards decide the next stage.",
    "advance": "Advanced to the next stage.",
    "abort": "Aborted: every instance is back on the active version.",
}


@login_required
@require_POST
def rollout_control(request: HttpRequest, slug: str, action: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=APPROVE)
    if action not in CONTROLS:
        raise Http404("No such rollout control.")
    rollout = selectors.rollout_live_for(deployment=deployment)
    if rollout is None:
        messages.error(request, "There is no rollout running any more; the page shows how it ended.")
        return redirect(_rollout_url(slug))
    comment = _comment(request)
    try:
        if action == "advance":
            services.rollout_advance(rollout=rollout, from_stage=rollout.stage, by=request.user,
                                     reason=comment or "advanced by hand")
        elif action == "abort":
            services.rollout_abort(rollout=rollout, by=request.user, reason=comment)
        elif action == "pause":
            services.rollout_pause(rollout=rollout, by=request.user, comment=comment)
        else:
            services.rollout_resume(rollout=rollout, by=request.user, comment=comment)
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, CONTROLS[action])
    return redirect(_rollout_url(slug))
