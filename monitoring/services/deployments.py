"""Teams and deployments: creating them, and their drift and four-eyes settings."""

from __future__ import annotations

import re

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.text import slugify

from monitoring.drift import DriftConfig, DriftConfigError
from monitoring.models import (
    Deployment,
    Team,
)
from monitoring.runtime import ModelSignature
from monitoring.services.audit import audit_record
from monitoring.services.errors import Conflict, ValidationFailed


def team_get_or_create(*, name: str) -> Team:
    team, _ = Team.objects.get_or_create(slug=slugify(name)[:100], defaults={"name": name})
    return team


# The metrics a floor can be set on: scores in [0, 1] where higher is better (not log_loss), each one that
# evaluation records (monitoring/metrics.py SCALAR_METRICS) and raises METRIC_BELOW_THRESHOLD on.
FLOOR_METRICS = (
    "accuracy", "f1_macro", "roc_auc", "precision_macro", "recall_macro", "precision_weighted", "recall_weighted",
    "f1_weighted",
)


# The URL converter's pattern (django.urls.converters.SlugConverter), which is Django's validate_slug.
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


@transaction.atomic
def deployment_create(
    *,
    team: Team,
    name: str,
    feature_names: list[str],
    class_labels: list[str],
    by: AbstractBaseUser | None,
    slug: str = "",
    description: str = "",
    metric_thresholds: dict | None = None,
    allow_non_finite: bool = False,
    require_distinct_approver: bool = True,
) -> Deployment:
    slug_limit = Deployment._meta.get_field("slug").max_length
    name_limit = Deployment._meta.get_field("name").max_length
    # A slug made from the name is cut to fit; one given is checked as given.
    slug = slug or slugify(name)[:slug_limit].strip("-")
    errors = []
    if not slug:
        errors.append({"field": "name", "message": "A deployment needs a name."})
    elif len(slug) > slug_limit or not _SLUG.fullmatch(slug):
        # The slug is every URL of the deployment: one that `<slug:slug>` cannot match breaks {% url %} on the
        # overview, for everyone.
        errors.append({"field": "slug", "message": f"A slug is 1 to {slug_limit} letters, digits, hyphens or "
                       "underscores (a-z, A-Z, 0-9, -, _)."})
    if len(name) > name_limit:
        errors.append({"field": "name", "message": f"A name is at most {name_limit} characters."})
    if not feature_names or len(set(feature_names)) != len(feature_names):
        errors.append({"field": "feature_names", "message": "Feature names must be a non-empty list without repeats."})
    if len(class_labels) < 2 or len(set(map(str, class_labels))) != len(class_labels):
        errors.append({"field": "class_labels", "message": "A classifier needs at least two distinct class labels."})
    for metric, floor in (metric_thresholds or {}).items():
        if not isinstance(floor, (int, float)) or not 0 <= floor <= 1:
            errors.append({"field": f"metric_thresholds.{metric}", "message": "A threshold is a number in [0, 1]."})
    if errors:
        raise ValidationFailed("The deployment is not valid.", errors=errors)
    if Deployment.objects.filter(slug=slug).exists():
        raise Conflict(f"A deployment with the slug {slug!r} already exists.")
    deployment = Deployment.objects.create(
        team=team,
        slug=slug,
        name=name,
        description=description,
        feature_names=[str(f) for f in feature_names],
        class_labels=[str(c) for c in class_labels],
        metric_thresholds=metric_thresholds or {},
        allow_non_finite=allow_non_finite,
        require_distinct_approver=require_distinct_approver,
        created_by=by,
    )
    audit_record(
        action="deployment.create",
        actor=by,
        deployment=deployment,
        obj=deployment,
        after={
            "slug": slug, "features": len(feature_names), "classes": deployment.class_labels,
            "require_distinct_approver": require_distinct_approver,
        },
    )
    return deployment


def _check_signature_fits(deployment: Deployment, signature: ModelSignature) -> None:
    if signature.feature_names and signature.feature_names != deployment.feature_names:
        raise ValidationFailed(
            "The model's feature names do not match the deployment's schema.",
            errors=[{"field": "file", "message": f"model: {signature.feature_names}, deployment: {deployment.feature_names}"}],
        )
    if signature.class_labels and set(signature.class_labels) - set(deployment.class_labels):
        unknown = sorted(set(signature.class_labels) - set(deployment.class_labels))
        raise ValidationFailed(f"The model predicts classes the deployment does not know: {unknown}.")


@transaction.atomic
def deployment_labels_alert_configure(*, deployment: Deployment, hours: int | None, by: AbstractBaseUser) -> Deployment:
    """How long without a label before "labels stopped" opens (None: never), audited."""
    if hours is not None and (not isinstance(hours, int) or not 1 <= hours <= 24 * 365):
        raise ValidationFailed("Hours must be a whole number from 1 to 8760, or empty for never.",
                               errors=[{"field": "labels_stopped_hours", "message": "1 to 8760, or empty"}])
    before = {"labels_stopped_hours": deployment.labels_stopped_hours}
    deployment.labels_stopped_hours = hours
    deployment.save(update_fields=["labels_stopped_hours"])
    audit_record(action="deployment.labels_alert_configure", actor=by, deployment=deployment, obj=deployment,
                 before=before, after={"labels_stopped_hours": hours})
    return deployment


def deployment_drift_configure(
    *,
    deployment: Deployment,
    by: AbstractBaseUser | None,
    config: dict | None = None,
    window_rows: int | None = None,
    interval_minutes: int | None = None,
) -> Deployment:
    """Set how drift is judged (tests, thresholds, correction; per feature) and the window and schedule."""
    config = config or {}
    try:
        DriftConfig.from_json(config, p_value=deployment.drift_p_value, feature_names=deployment.feature_names)
    except DriftConfigError as error:
        raise ValidationFailed(str(error), errors=[{"field": "drift_config", "message": str(error)}]) from None
    for field, value in (("window_rows", window_rows), ("interval_minutes", interval_minutes)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValidationFailed(f"{field} must be a positive whole number.", errors=[{"field": field, "message": "positive integer"}])
    before = {"config": deployment.drift_config, "window_rows": deployment.drift_window_rows,
              "interval_minutes": deployment.drift_interval_minutes}
    with transaction.atomic():
        deployment.drift_config = config
        deployment.drift_window_rows = window_rows
        deployment.drift_interval_minutes = interval_minutes
        deployment.save(update_fields=["drift_config", "drift_window_rows", "drift_interval_minutes"])
        audit_record(
            action="deployment.drift_configure", actor=by, actor_label="" if by else "system", deployment=deployment,
            obj=deployment, before=before,
            after={"config": config, "window_rows": window_rows, "interval_minutes": interval_minutes},
        )
    return deployment


@transaction.atomic
def deployment_approval_configure(
    *, deployment: Deployment, require_distinct_approver: bool, by: AbstractBaseUser
) -> Deployment:
    """Turn the four-eyes rule (see version_approve) on or off for one deployment."""
    # The stored value, not the object's: a form (the admin's) may have set the new one on it already.
    stored = Deployment.objects.select_for_update().values_list("require_distinct_approver", flat=True).get(pk=deployment.pk)
    before = {"require_distinct_approver": stored}
    deployment.require_distinct_approver = require_distinct_approver
    deployment.save(update_fields=["require_distinct_approver"])
    audit_record(
        action="deployment.approval_configure", actor=by, deployment=deployment, obj=deployment, before=before,
        after={"require_distinct_approver": require_distinct_approver},
    )
    return deployment


@transaction.atomic
def deployment_thresholds_configure(
    *, deployment: Deployment, metric_thresholds: dict[str, float], by: AbstractBaseUser
) -> Deployment:
    """Replace the metric floors: an evaluation of the serving version below a floor raises a critical alert.

    A metric left out has no floor. Nothing is written when any floor is refused."""
    errors = []
    for metric, floor in metric_thresholds.items():
        if metric not in FLOOR_METRICS:
            errors.append({"field": metric, "message": f"{metric!r} has no floor; floors apply to {', '.join(FLOOR_METRICS)}."})
        elif isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor <= 1:
            errors.append({"field": metric, "message": f"The floor for {metric} is a number from 0 to 1, e.g. 0.9."})
    if errors:
        raise ValidationFailed(errors[0]["message"], errors=errors)
    stored = Deployment.objects.select_for_update().values_list("metric_thresholds", flat=True).get(pk=deployment.pk)
    after = {metric: float(metric_thresholds[metric]) for metric in FLOOR_METRICS if metric in metric_thresholds}
    deployment.metric_thresholds = after
    deployment.save(update_fields=["metric_thresholds"])
    audit_record(
        action="deployment.thresholds_configure", actor=by, deployment=deployment, obj=deployment,
        before={"metric_thresholds": stored}, after={"metric_thresholds": after},
    )
    return deployment
