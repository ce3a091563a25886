"""Model versions: registering an upload, approving, rejecting, rolling back."""

from __future__ import annotations

import re
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from monitoring.models import (
    Deployment,
    MaintenanceJob,
    ModelVersion,
    ServingPeriod,
    Team,
)
from monitoring.recipes import RecipeError, recipe_check
from monitoring.runtime import InvalidModelError, ModelSignature, inspect_model
from monitoring.services.alerts import candidate_decided, candidate_waiting_raise
from monitoring.services.audit import _version_state, audit_record
from monitoring.services.blobs import blob_put
from monitoring.services.comparisons import comparisons_request
from monitoring.services.deployments import _check_signature_fits, deployment_create
from monitoring.services.errors import Conflict, NotFound, NotPermitted, TooLarge, ValidationFailed
from monitoring.services.events import event_emit
from monitoring.services.serving import serving_changed, version_sign
from monitoring.services.shadow import shadow_replay_request


def version_register(
    *,
    deployment: Deployment,
    data: bytes,
    by: AbstractBaseUser | None,
    origin: str = "upload",
    parent: ModelVersion | None = None,
    job: MaintenanceJob | None = None,
    recipe: bytes | None = None,
    notes: str = "",
    activate_if_first: bool = True,
    training_rows: dict | None = None,
) -> ModelVersion:
    """Validate ONNX bytes against the deployment's schema, store them, and add a version.

    The first version of a deployment becomes active; later ones are candidates awaiting approval.
    Raises ValidationFailed (nothing stored) when the file is not a fitting classifier.
    """
    if len(data) > settings.MAX_MODEL_UPLOAD_BYTES:
        raise TooLarge(f"The model file is {len(data)} bytes; the limit is {settings.MAX_MODEL_UPLOAD_BYTES}.")
    try:
        signature = inspect_model(
            data, expected_features=deployment.n_features, memory_bytes=settings.MODEL_SMOKE_MEMORY_BYTES,
            timeout_seconds=settings.MODEL_SMOKE_TIMEOUT_SECONDS,
        )
    except InvalidModelError as exc:
        raise ValidationFailed(str(exc), errors=[{"field": "file", "message": str(exc)}]) from None
    _check_signature_fits(deployment, signature)
    if recipe is not None:
        _check_recipe(recipe)
    with transaction.atomic():
        version = _version_create(
            deployment=deployment, signature=signature, sha=blob_put(data), size=len(data),
            recipe_sha=blob_put(recipe) if recipe else "", by=by, origin=origin, parent=parent, job=job,
            notes=notes, activate_if_first=activate_if_first, training_rows=training_rows or {},
        )
        active = deployment.active_version()
        if version.status == ModelVersion.Status.CANDIDATE and active is not None:
            # Computed now on a worker, so the approval page has its statistics by the time someone opens it.
            comparisons_request(candidate=version, active=active)
            shadow_replay_request(candidate=version, active=active)
        candidate_waiting_raise(version=version)
        return version


def deployment_create_from_model(
    *,
    team: Team,
    name: str,
    data: bytes,
    by: AbstractBaseUser,
    feature_names: list[str] | None = None,
    class_labels: list[str] | None = None,
    recipe: bytes | None = None,
    slug: str = "",
    description: str = "",
    metric_thresholds: dict | None = None,
) -> Deployment:
    """A deployment whose schema is read from an ONNX classifier, which becomes its active v1.

    Feature names come from the model's metadata, else from `feature_names` (as many as its input takes); the
    classes from its graph or metadata, else from `class_labels`. Given both, they must agree. The file gets
    every check an uploaded version gets; nothing is stored unless the deployment and its v1 both are.
    """
    if len(data) > settings.MAX_MODEL_UPLOAD_BYTES:
        raise TooLarge(f"The model file is {len(data)} bytes; the limit is {settings.MAX_MODEL_UPLOAD_BYTES}.")
    try:
        signature = inspect_model(
            data, memory_bytes=settings.MODEL_SMOKE_MEMORY_BYTES, timeout_seconds=settings.MODEL_SMOKE_TIMEOUT_SECONDS,
        )
    except InvalidModelError as exc:
        raise ValidationFailed(str(exc), errors=[{"field": "file", "message": str(exc)}]) from None
    features = _schema_part(
        "feature_names", "features", from_model=signature.feature_names, typed=feature_names or [],
        expected_count=signature.n_features,
    )
    classes = _schema_part("class_labels", "classes", from_model=signature.class_labels, typed=class_labels or [])
    if recipe is not None:
        _check_recipe(recipe)
    with transaction.atomic():
        deployment = deployment_create(
            team=team, name=name, slug=slug, description=description, feature_names=features, class_labels=classes,
            metric_thresholds=metric_thresholds, by=by,
        )
        _check_signature_fits(deployment, signature)
        _version_create(
            deployment=deployment, signature=signature, sha=blob_put(data), size=len(data),
            recipe_sha=blob_put(recipe) if recipe else "", by=by, origin="upload", parent=None, job=None,
            notes="The model the deployment was created from.", activate_if_first=True,
        )
    return deployment


def _schema_part(
    field: str, what: str, *, from_model: list[str], typed: list[str], expected_count: int | None = None
) -> list[str]:
    """The model's own names, or the typed ones where the model has none; refused when they disagree."""
    typed = [str(t) for t in typed]
    if from_model and typed and list(from_model) != typed:
        raise ValidationFailed(
            f"The model's {what} ({', '.join(from_model[:8])}{', …' if len(from_model) > 8 else ''}) differ from the "
            f"ones typed. Leave them empty to use the model's.", errors=[{"field": field, "message": "differs from the model"}],
        )
    names = list(from_model) or typed
    if not names:
        count = f" ({expected_count} of them)" if expected_count else ""
        raise ValidationFailed(
            f"The model does not name its {what}; type them{count}, separated by commas or new lines.",
            errors=[{"field": field, "message": f"the model does not name its {what}"}],
        )
    if expected_count is not None and len(names) != expected_count:
        raise ValidationFailed(
            f"The model takes {expected_count} features; {len(names)} names were typed.",
            errors=[{"field": field, "message": f"{expected_count} names needed"}],
        )
    return names


def _check_recipe(recipe: bytes) -> None:
    """Refuse a recipe now, not months later when a retrain needs it, but build nothing from it here.

    Only the zip and the schema are checked in the request (monitoring/recipes.py); the estimator is built
    and fitted in the worker, which checks again first and fails the job with a clear message if it cannot.
    """
    try:
        recipe_check(recipe, max_bytes=settings.MAX_MODEL_UPLOAD_BYTES)
    except RecipeError as exc:
        raise ValidationFailed(str(exc), errors=[{"field": "recipe", "message": str(exc)}]) from None


def _version_create(
    *, deployment, signature: ModelSignature, sha: str, size: int, recipe_sha: str, by, origin, parent, job, notes,
    activate_if_first: bool, training_rows: dict | None = None,
) -> ModelVersion:
    # Lock the deployment row: concurrent uploads must not take the same version number.
    Deployment.objects.select_for_update().get(pk=deployment.pk)
    number = (deployment.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    first = number == 1 and activate_if_first
    version = ModelVersion.objects.create(
        deployment=deployment,
        number=number,
        status=ModelVersion.Status.ACTIVE if first else ModelVersion.Status.CANDIDATE,
        activated_at=timezone.now() if first else None,
        parent=parent,
        origin=origin,
        notes=notes,
        sha256=sha,
        size_bytes=size,
        input_name=signature.input_name,
        input_shape=signature.input_shape,
        output_names=signature.output_names,
        label_output=signature.label_output,
        probability_output=signature.probability_output,
        class_labels=signature.class_labels or deployment.class_labels,
        opset=signature.opset,
        producer=signature.producer,
        recipe_sha256=recipe_sha,
        training_rows=training_rows or {},
        created_by=by,
        created_by_job=job,
    )
    if first:
        _serve(version, at=version.activated_at)
    version_sign(version=version)  # before anything can serve it; a first version's pollers are woken by it
    audit_record(
        action="version.register",
        actor=by,
        actor_label="" if by else "worker",
        deployment=deployment,
        obj=version,
        after=_version_state(version) | {"origin": origin, "size_bytes": size},
    )
    event_emit(deployment=deployment, event="version.registered", data=version_event_data(version))
    return version


def _require_reason(comment: str, *, doing: str) -> str:
    """Every decision that changes what serves says why: the reason is shown on the version and in the audit log."""
    reason = (comment or "").strip()
    if not reason:
        raise ValidationFailed(
            f"Say why you {doing}: the reason is recorded with the decision and shown on the version's page.",
            errors=[{"field": "comment", "message": "a reason is required"}],
        )
    return reason


def version_event_data(version: ModelVersion) -> dict:
    return {"version": version.number, "status": version.status, "sha256": version.sha256, "origin": version.origin}


def _decide(version: ModelVersion, *, by: AbstractBaseUser, comment: str) -> None:
    version.decided_by = by
    version.decided_at = timezone.now()
    version.decision_comment = comment


def _locked_version(version: ModelVersion) -> ModelVersion:
    Deployment.objects.select_for_update().get(pk=version.deployment_id)
    return ModelVersion.objects.select_related("deployment").get(pk=version.pk)


def _check_second_approver(version: ModelVersion, by: AbstractBaseUser) -> None:
    """With require_distinct_approver, whoever brought the candidate in (uploaded it, or queued the job that
    made it) may not also ship it."""
    if not version.deployment.require_distinct_approver:
        return
    job = version.created_by_job
    if version.created_by_id == by.pk:
        who = "uploaded it"
    elif job is not None and job.requested_by_id == by.pk:
        who = f"queued job {job.pk}, which made it"
    else:
        return
    raise NotPermitted(
        f"v{version.number} needs a second approver: you {who}, and {version.deployment.name} requires someone "
        "else to approve it (the deployment's require_distinct_approver setting)."
    )


def _serve(version: ModelVersion, *, at: datetime) -> None:
    ServingPeriod.objects.create(deployment_id=version.deployment_id, version=version, started_at=at)


def _retire(version: ModelVersion, *, by: AbstractBaseUser | None, reason: str, at: datetime) -> None:
    """Out of production at `at`, the moment its successor's serving period starts: no gap, no overlap."""
    version.status = ModelVersion.Status.RETIRED
    version.retired_at = at
    version.retired_by = by
    version.retired_reason = reason
    version.save(update_fields=["status", "retired_at", "retired_by", "retired_reason"])
    ServingPeriod.objects.filter(version=version, ended_at__isnull=True).update(ended_at=version.retired_at)


@transaction.atomic
def version_approve(*, version: ModelVersion, by: AbstractBaseUser, comment: str) -> ModelVersion:
    """Make a candidate the active version; the previous active one is retired and kept for rollback.

    `comment` is the reason, required (ValidationFailed, nothing written, when it is blank)."""
    comment = _require_reason(comment, doing=f"approve v{version.number}")
    version = _locked_version(version)
    if version.status != ModelVersion.Status.CANDIDATE:
        raise Conflict(f"v{version.number} is {version.status}; only a candidate can be approved.")
    _check_second_approver(version, by)
    before = _version_state(version)
    previous = version.deployment.active_version()
    now = timezone.now()
    if previous is not None:
        _retire(previous, by=by, reason=f"replaced by v{version.number}", at=now)
    version.status = ModelVersion.Status.ACTIVE
    version.activated_at = now
    _decide(version, by=by, comment=comment)
    version.save()
    _serve(version, at=version.activated_at)
    candidate_decided(version=version)
    serving_changed(deployment_id=version.deployment_id)
    audit_record(
        action="version.approve",
        actor=by,
        deployment=version.deployment,
        obj=version,
        before=before | {"active_version": previous.number if previous else None},
        after=_version_state(version) | {"active_version": version.number},
        comment=comment,
    )
    event_emit(deployment=version.deployment, event="version.approved",
               data=version_event_data(version) | {"by": by.get_username(), "rollout": None})
    return version


@transaction.atomic
def version_reject(*, version: ModelVersion, by: AbstractBaseUser, comment: str) -> ModelVersion:
    """Refuse a candidate for good; `comment` is the reason, required as for an approval."""
    comment = _require_reason(comment, doing=f"reject v{version.number}")
    version = _locked_version(version)
    if version.status != ModelVersion.Status.CANDIDATE:
        raise Conflict(f"v{version.number} is {version.status}; only a candidate can be rejected.")
    before = _version_state(version)
    version.status = ModelVersion.Status.REJECTED
    _decide(version, by=by, comment=comment)
    version.save()
    candidate_decided(version=version)
    audit_record(
        action="version.reject",
        actor=by,
        deployment=version.deployment,
        obj=version,
        before=before,
        after=_version_state(version),
        comment=comment,
    )
    return version


@transaction.atomic
def deployment_rollback(*, deployment: Deployment, by: AbstractBaseUser | None, comment: str) -> ModelVersion:
    """Re-activate the version that was active before the current one; `comment` is the reason, required (a
    guard's automatic rollback, by=None, gives its own)."""
    target = deployment.rollback_target()
    comment = _require_reason(comment, doing=f"roll back to v{target.number}" if target else "roll back")
    Deployment.objects.select_for_update().get(pk=deployment.pk)
    current = deployment.active_version()
    if current is None:
        raise Conflict("There is no active version to roll back from.")
    target = deployment.rollback_target()
    if target is None:
        raise Conflict("No earlier version has been in production; there is nothing to roll back to.")
    now = timezone.now()
    _retire(current, by=by, reason=f"rolled back to v{target.number}: {comment}", at=now)
    target.status = ModelVersion.Status.ACTIVE
    target.activated_at = now
    target.retired_at, target.retired_by, target.retired_reason = None, None, ""  # serving again
    target.save(update_fields=["status", "activated_at", "retired_at", "retired_by", "retired_reason"])
    _serve(target, at=target.activated_at)
    serving_changed(deployment_id=deployment.pk)
    audit_record(
        action="deployment.rollback",
        actor=by,
        deployment=deployment,
        obj=target,
        before={"active_version": current.number},
        after={"active_version": target.number},
        comment=comment,
        actor_label="" if by else "worker",  # the guards' auto-rollback after a rollout (services/rollouts.py)
    )
    event_emit(deployment=deployment, event="version.rolled_back",
               data={"version": current.number, "active_version": target.number,
                     "by": by.get_username() if by else "worker",
                     "reason": comment, "guard": None})
    return target


# A tag is a short label people type and filter by: letters, digits and . _ - : /, up to 40 characters.
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,39}$")
MAX_TAGS = 20


def _clean_tag(tag: str) -> str:
    tag = (tag or "").strip()
    if not TAG_PATTERN.match(tag):
        raise ValidationFailed(
            f"{tag!r} is not a tag: use 1 to 40 letters, digits or . _ - : / (starting with a letter or digit), "
            "for example baseline or eu-2026-q4.",
            errors=[{"field": "tag", "message": "1-40 letters, digits or . _ - : /"}],
        )
    return tag


@transaction.atomic
def version_tag_add(*, version: ModelVersion, tag: str, by: AbstractBaseUser) -> ModelVersion:
    """Add a tag (no change, nothing audited, when the version has it already)."""
    tag = _clean_tag(tag)
    version = ModelVersion.objects.select_for_update().select_related("deployment").get(pk=version.pk)
    if tag in version.tags:
        return version
    if len(version.tags) >= MAX_TAGS:
        raise ValidationFailed(
            f"v{version.number} has {MAX_TAGS} tags already, the most it can have; remove one first.",
            errors=[{"field": "tag", "message": f"at most {MAX_TAGS} tags"}],
        )
    before = list(version.tags)
    version.tags = sorted([*version.tags, tag])
    version.save(update_fields=["tags"])
    audit_record(
        action="version.tag", actor=by, deployment=version.deployment, obj=version,
        before={"tags": before}, after={"tags": version.tags},
    )
    return version


@transaction.atomic
def version_tag_remove(*, version: ModelVersion, tag: str, by: AbstractBaseUser) -> ModelVersion:
    version = ModelVersion.objects.select_for_update().select_related("deployment").get(pk=version.pk)
    if tag not in version.tags:
        raise NotFound(f"v{version.number} has no tag {tag!r}.")
    before = list(version.tags)
    version.tags = [t for t in version.tags if t != tag]
    version.save(update_fields=["tags"])
    audit_record(
        action="version.untag", actor=by, deployment=version.deployment, obj=version,
        before={"tags": before}, after={"tags": version.tags},
    )
    return version
