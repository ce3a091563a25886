"""Setting a deployment up from the dashboard: creating one, and its metric floors and drift settings."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from dashboard.access import APPROVE, OPERATE, can, get_deployment_for, get_team_for
from dashboard.forms import (
    GUARD_LABELS,
    GUARDS_WITHOUT_TEST,
    METRIC_LABELS,
    DeploymentCreateForm,
    DriftSettingsForm,
    RolloutPlanInput,
    ThresholdsForm,
)
from monitoring import selectors, services
from monitoring.drift import DriftConfig, DriftConfigError
from monitoring.models import Deployment
from monitoring.rollout.guards import GUARD_NAMES, GuardConfig


@login_required
def deployment_new(request: HttpRequest) -> HttpResponse:
    """Any team member with the operator role may create a deployment in that team (as the API allows)."""
    if request.method == "POST":
        # Access first, as everywhere: a team the user is not in is a 404, one they only view a 403.
        get_team_for(request.user, request.POST.get("team", ""), need=OPERATE)
    teams = selectors.teams_where(user=request.user, need=OPERATE)
    form = DeploymentCreateForm(request.POST or None, request.FILES or None, teams=teams)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        team = get_team_for(request.user, data["team"], need=OPERATE)
        upload, recipe = data["file"], data["recipe"]
        try:
            if upload:
                deployment = services.deployment_create_from_model(
                    team=team, name=data["name"], description=data["description"], data=upload.read(),
                    recipe=recipe.read() if recipe else None, feature_names=data["feature_names"],
                    class_labels=data["class_labels"], by=request.user,
                )
            else:
                deployment = services.deployment_create(
                    team=team, name=data["name"], description=data["description"],
                    feature_names=data["feature_names"], class_labels=data["class_labels"], by=request.user,
                )
        except services.ServiceError as exc:
            form.add_error(None, exc.message)
            for error in exc.errors:
                if error.get("message") and error["message"] != exc.message and error.get("field") not in form.fields:
                    form.add_error(None, error["message"])
            status = exc.status
        else:
            first = "with v1 serving" if upload else "with no version yet"
            messages.success(
                request, f"{deployment.name} is created {first}: {deployment.n_features} features, classes "
                f"{', '.join(deployment.class_labels)}. Next, upload its reference and evaluation datasets.",
            )
            return redirect("deployment", deployment.slug)
    elif request.method == "POST":
        status = 400
    return render(request, "deployments/new.html", {"form": form, "teams": teams}, status=status)


def _settings_page(
    request: HttpRequest, deployment: Deployment, *, thresholds: ThresholdsForm | None = None,
    drift: DriftSettingsForm | None = None, retention_values: dict | None = None, retention_errors: dict | None = None,
    plan_posted: dict | None = None, plan_errors: list[str] | None = None, status: int = 200,
) -> HttpResponse:
    try:
        effective = DriftConfig.from_json(
            deployment.drift_config, p_value=deployment.drift_p_value, feature_names=deployment.feature_names
        )
    except DriftConfigError:  # stored before a rule tightened: shown as stored, and the form says what to fix
        effective = None
    context = {
        "deployment": deployment,
        "can_approve": can(request.user, deployment, APPROVE),
        "can_operate": can(request.user, deployment, OPERATE),
        "thresholds_form": thresholds or ThresholdsForm(metrics=services.FLOOR_METRICS, initial=deployment.metric_thresholds),
        "drift_form": drift or DriftSettingsForm(initial=DriftSettingsForm.initial_for(
            config=deployment.drift_config, window_rows=deployment.drift_window_rows,
            interval_minutes=deployment.drift_interval_minutes,
        )),
        "floors": [(METRIC_LABELS.get(m, m), v) for m, v in deployment.metric_thresholds.items()],
        "effective": effective,
        "reference": deployment.reference_dataset,
        "evaluation": deployment.evaluation_dataset,
        "retention": selectors.retention_summary(deployment=deployment, now=timezone.now()),
        "retention_values": retention_values or {
            "retain_predictions_days": deployment.retain_predictions_days,
            "retain_reports_days": deployment.retain_reports_days,
        },
        "retention_errors": retention_errors or {},
        **_rollout_plan_context(deployment, posted=plan_posted),
        "plan_errors": plan_errors or [],
    }
    return render(request, "deployments/settings.html", context, status=status)


# Blank rows under a plan's stages, for adding stages on the page without JavaScript.
SPARE_STAGE_ROWS = 2


def _rollout_plan_context(deployment: Deployment, *, posted: dict | None) -> dict:
    """The plan's stages (share in per cent) and each guard's setting next to its default, as the form shows
    them; after a refused POST, what was typed instead."""
    plan = services.rollout_plan_of(deployment)
    defaults, overrides = GuardConfig(), plan.guards or {}
    effective = GuardConfig.from_dict(overrides)
    if posted is not None:
        stage_rows, guard_values = posted["stages"], posted["guards"]
    else:
        stage_rows = [{"share": f"{stage['share'] * 100:g}", "minutes": stage["min_minutes"],
                       "predictions": stage["min_predictions"]} for stage in plan.stages]
        guard_values = {name: overrides.get(name, {}) for name in GUARD_NAMES}
    stage_rows = stage_rows + [{"share": "", "minutes": "", "predictions": ""}] * SPARE_STAGE_ROWS
    guards = [
        {"name": name, "label": GUARD_LABELS.get(name, (name, ""))[0], "measures": GUARD_LABELS.get(name, ("", ""))[1],
         "default": getattr(defaults, name), "effective": getattr(effective, name), "typed": guard_values.get(name, {}),
         "tested": name not in GUARDS_WITHOUT_TEST}
        for name in GUARD_NAMES
    ]
    return {"rollout_plan": plan, "rollout_interval": settings.ROLLOUT_GUARD_INTERVAL_SECONDS, "plan_stage_rows": stage_rows, "plan_guards": guards,
            "plan_watch_minutes": posted["watch_minutes"] if posted else plan.watch_minutes,
            "plan_auto_rollback": posted["auto_rollback"] if posted else plan.auto_rollback}


def _plan_posted(data) -> dict:
    """The plan form as typed, to show it again when it is refused."""
    rows = zip(data.getlist("stage_share"), data.getlist("stage_minutes"), data.getlist("stage_predictions"),
               strict=False)
    stages = [{"share": s, "minutes": m, "predictions": p} for s, m, p in rows if (s + m + p).strip()]
    guards = {name: {key: data.get(f"guard_{name}_{key}", "") for key in ("threshold", "min_rows", "alpha")}
              for name in GUARD_NAMES}
    return {"stages": stages, "guards": guards, "watch_minutes": data.get("watch_minutes", ""),
            "auto_rollback": data.get("auto_rollback") == "on"}


@login_required
@require_POST
def deployment_rollout_plan(request: HttpRequest, slug: str) -> HttpResponse:
    """The default plan a "Roll out" uses, its guards and the watch after promotion; approvers decide, as they do
    approvals (a looser guard lets a worse candidate through)."""
    deployment = get_deployment_for(request.user, slug, need=APPROVE)
    typed = RolloutPlanInput(request.POST, guard_names=GUARD_NAMES)
    stages, guards, watch_minutes = typed.stages(), typed.guards(), typed.watch_minutes()
    if typed.errors:
        return _settings_page(request, deployment, plan_posted=_plan_posted(request.POST), plan_errors=typed.errors,
                              status=400)
    try:
        services.rollout_plan_set(deployment=deployment, by=request.user, stages=stages, guards=guards,
                                  watch_minutes=watch_minutes, auto_rollback=typed.auto_rollback())
    except services.ServiceError as exc:
        return _settings_page(request, deployment, plan_posted=_plan_posted(request.POST), plan_errors=[exc.message],
                              status=exc.status)
    messages.success(request, "Rollout plan saved; the next \"Roll out\" uses it (a running rollout keeps its own).")
    return redirect(_settings_url(slug, "rollout-plan"))


@login_required
def deployment_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """Everyone on the team reads the settings; approvers change them (they decide what raises an alert)."""
    return _settings_page(request, get_deployment_for(request.user, slug))


def _settings_url(slug: str, anchor: str) -> str:
    return reverse("deployment-settings", args=[slug]) + f"#{anchor}"


@login_required
@require_POST
def deployment_thresholds(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=APPROVE)
    form = ThresholdsForm(request.POST, metrics=services.FLOOR_METRICS)
    if not form.is_valid():
        return _settings_page(request, deployment, thresholds=form, status=400)
    try:
        services.deployment_thresholds_configure(deployment=deployment, metric_thresholds=form.floors(), by=request.user)
    except services.ServiceError as exc:
        form.add_error(None, exc.message)
        return _settings_page(request, deployment, thresholds=form, status=exc.status)
    messages.success(request, "Metric floors saved; the next evaluation is judged by them.")
    return redirect(_settings_url(slug, "floors"))


@login_required
@require_POST
def deployment_labels_alert(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=APPROVE)
    raw = request.POST.get("labels_stopped_hours", "").strip()
    try:
        hours = int(raw) if raw else None
    except ValueError:
        messages.error(request, "Hours must be a whole number, or empty for never.")
        return _settings_page(request, deployment, status=400)
    try:
        services.deployment_labels_alert_configure(deployment=deployment, hours=hours, by=request.user)
    except services.ServiceError as exc:
        messages.error(request, exc.message)
        return _settings_page(request, deployment, status=exc.status)
    messages.success(request, f"Labels alert after {hours} h without a label." if hours else "Labels alert off.")
    return redirect(_settings_url(slug, "labels"))


@login_required
@require_POST
def deployment_drift(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=APPROVE)
    form = DriftSettingsForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, deployment, drift=form, status=400)
    try:
        services.deployment_drift_configure(
            deployment=deployment, config=form.config(), window_rows=form.cleaned_data["window_rows"],
            interval_minutes=form.cleaned_data["interval_minutes"], by=request.user,
        )
    except services.ServiceError as exc:
        form.add_error(None, exc.message)
        return _settings_page(request, deployment, drift=form, status=exc.status)
    messages.success(request, "Drift settings saved; the next check uses them.")
    return redirect(_settings_url(slug, "drift"))



RETENTION_FIELDS = ("retain_predictions_days", "retain_reports_days")


@login_required
@require_POST
def deployment_retention(request: HttpRequest, slug: str) -> HttpResponse:
    """How long predictions and drift reports are kept; approvers decide, as they do the other settings
    (a shorter retention deletes data at the next purge)."""
    deployment = get_deployment_for(request.user, slug, need=APPROVE)
    raw = {name: request.POST.get(name, "").strip() for name in RETENTION_FIELDS}
    try:
        days = {name: int(text) if text else None for name, text in raw.items()}
    except ValueError:
        errors = {name: "A whole number of days, or empty to keep for ever." for name, text in raw.items()
                  if text and not text.lstrip("-").isdigit()}
        return _settings_page(request, deployment, retention_values=raw, retention_errors=errors, status=400)
    try:
        services.deployment_retention_configure(
            deployment=deployment, predictions_days=days["retain_predictions_days"],
            reports_days=days["retain_reports_days"], by=request.user,
        )
    except services.ServiceError as exc:
        errors = {e["field"]: e["message"] for e in exc.errors if e.get("field") in RETENTION_FIELDS}
        deployment.refresh_from_db()
        return _settings_page(request, deployment, retention_values=raw,
                              retention_errors=errors or {"retain_predictions_days": exc.message}, status=exc.status)
    messages.success(request, "Retention saved; the next purge applies it.")
    return redirect(_settings_url(slug, "retention"))
