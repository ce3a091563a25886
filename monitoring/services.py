"""Every write to Watchkeeper's domain goes through a function here.

Views, API endpoints, commands and tasks parse their input, call one service,
and render. Each service runs in a transaction and writes its audit record in it.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from monitoring import batches, indexing, pgcopy, storage, tablefiles, tabular
from monitoring.drift import DriftConfig, DriftConfigError
from monitoring.models import (
    Alert,
    ApiToken,
    AuditEvent,
    Dataset,
    Deployment,
    DriftFeaturePoint,
    DriftReport,
    EvaluationRun,
    MaintenanceJob,
    Membership,
    MetricPoint,
    ModelVersion,
    Prediction,
    PredictionBatch,
    ReferenceProfile,
    Role,
    Team,
    VersionComparisonResult,
)
from monitoring.recipes import RecipeError, recipe_check
from monitoring.runtime import InvalidModelError, ModelSignature, inspect_model


class ServiceError(Exception):
    """A request that cannot be carried out. `message` is shown to the user; `status` maps to HTTP."""

    status = 400

    def __init__(self, message: str, *, errors: list[dict] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class ValidationFailed(ServiceError):
    status = 422


class Conflict(ServiceError):
    status = 409


class NotFound(ServiceError):
    status = 404


class TooLarge(ServiceError):
    status = 413


class NotPermitted(ServiceError):
    """The role allows it, but a rule of the deployment forbids this person doing it."""

    status = 403


# ---------------------------------------------------------------- audit


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | None,
    actor_label: str = "",
    deployment: Deployment | None = None,
    obj=None,
    before: dict | None = None,
    after: dict | None = None,
    comment: str = "",
) -> AuditEvent:
    label = actor_label or (actor.get_username() if actor is not None else "system")
    return AuditEvent.objects.create(
        actor=actor,
        actor_label=label,
        action=action,
        deployment=deployment,
        object_type=type(obj).__name__ if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        before=before,
        after=after,
        comment=comment,
    )


def _version_state(version: ModelVersion) -> dict:
    return {"version": version.number, "status": version.status, "sha256": version.sha256}


# ---------------------------------------------------------------- blobs


def blob_put(data: bytes) -> str:
    """Store bytes for a row about to be written. If the row's transaction fails, the file stays until
    storage_collect_garbage finds it named by no row: deleting it at once could take it from a concurrent
    request that stored the same bytes and committed."""
    return storage.put_blob(settings.MEDIA_ROOT, data)


def blob_read(sha256: str) -> bytes:
    """Bytes verified against their sha256; raises storage.BlobIntegrityError on mismatch."""
    return storage.read_blob(settings.MEDIA_ROOT, sha256)


# A file younger than this may belong to a row whose transaction has not committed yet.
BLOB_GRACE = timedelta(hours=1)


def storage_collect_garbage(*, older_than: timedelta = BLOB_GRACE) -> int:
    """Delete the media store's files that no row names any more (batches rejected or deleted with their
    deployment, deleted versions and datasets), and temporary files of writes that never finished.
    Returns how many were deleted."""
    cutoff = time.time() - older_than.total_seconds()
    # Old files first, then the rows naming files, then each file's age again: a row committed after the
    # query reused its file through put_blob, which made it young again.
    candidates = list(storage.files_older_than(settings.MEDIA_ROOT, cutoff))
    referenced = set(ModelVersion.objects.values_list("sha256", flat=True))
    referenced |= set(ModelVersion.objects.values_list("recipe_sha256", flat=True))
    referenced |= set(Dataset.objects.values_list("sha256", flat=True))
    referenced |= set(ReferenceProfile.objects.values_list("sha256", flat=True))
    referenced |= set(PredictionBatch.objects.exclude(columns_sha256="").values_list("columns_sha256", flat=True))
    return sum(storage.delete_if_older(path, cutoff) for digest, path in candidates if digest not in referenced)


# ---------------------------------------------------------------- deployments and versions


def team_get_or_create(*, name: str) -> Team:
    team, _ = Team.objects.get_or_create(slug=slugify(name)[:100], defaults={"name": name})
    return team


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
            notes=notes, activate_if_first=activate_if_first,
        )
        active = deployment.active_version()
        if version.status == ModelVersion.Status.CANDIDATE and active is not None:
            # Computed now on a worker, so the approval page has its statistics by the time someone opens it.
            comparisons_request(candidate=version, active=active)
        return version


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
    activate_if_first: bool,
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
        created_by=by,
        created_by_job=job,
    )
    audit_record(
        action="version.register",
        actor=by,
        actor_label="" if by else "worker",
        deployment=deployment,
        obj=version,
        after=_version_state(version) | {"origin": origin, "size_bytes": size},
    )
    return version


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


@transaction.atomic
def version_approve(*, version: ModelVersion, by: AbstractBaseUser, comment: str = "") -> ModelVersion:
    """Make a candidate the active version; the previous active one is retired and kept for rollback."""
    version = _locked_version(version)
    if version.status != ModelVersion.Status.CANDIDATE:
        raise Conflict(f"v{version.number} is {version.status}; only a candidate can be approved.")
    _check_second_approver(version, by)
    before = _version_state(version)
    previous = version.deployment.active_version()
    if previous is not None:
        previous.status = ModelVersion.Status.RETIRED
        previous.save(update_fields=["status"])
    version.status = ModelVersion.Status.ACTIVE
    version.activated_at = timezone.now()
    _decide(version, by=by, comment=comment)
    version.save()
    audit_record(
        action="version.approve",
        actor=by,
        deployment=version.deployment,
        obj=version,
        before=before | {"active_version": previous.number if previous else None},
        after=_version_state(version) | {"active_version": version.number},
        comment=comment,
    )
    return version


@transaction.atomic
def version_reject(*, version: ModelVersion, by: AbstractBaseUser, comment: str = "") -> ModelVersion:
    version = _locked_version(version)
    if version.status != ModelVersion.Status.CANDIDATE:
        raise Conflict(f"v{version.number} is {version.status}; only a candidate can be rejected.")
    before = _version_state(version)
    version.status = ModelVersion.Status.REJECTED
    _decide(version, by=by, comment=comment)
    version.save()
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
def deployment_rollback(*, deployment: Deployment, by: AbstractBaseUser, comment: str = "") -> ModelVersion:
    """Re-activate the version that was active before the current one."""
    Deployment.objects.select_for_update().get(pk=deployment.pk)
    current = deployment.active_version()
    if current is None:
        raise Conflict("There is no active version to roll back from.")
    target = (
        deployment.versions.filter(status=ModelVersion.Status.RETIRED, activated_at__isnull=False)
        .order_by("-activated_at")
        .first()
    )
    if target is None:
        raise Conflict("No earlier version has been in production; there is nothing to roll back to.")
    current.status = ModelVersion.Status.RETIRED
    current.save(update_fields=["status"])
    target.status = ModelVersion.Status.ACTIVE
    target.activated_at = timezone.now()
    target.save(update_fields=["status", "activated_at"])
    audit_record(
        action="deployment.rollback",
        actor=by,
        deployment=deployment,
        obj=target,
        before={"active_version": current.number},
        after={"active_version": target.number},
        comment=comment,
    )
    return target


# ---------------------------------------------------------------- datasets


def dataset_to_bytes(X: np.ndarray, y: np.ndarray | None) -> bytes:
    buffer = io.BytesIO()
    arrays = {"X": np.ascontiguousarray(X, dtype=np.float32)}
    if y is not None:
        arrays["y"] = np.asarray(y).astype(str)
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def dataset_load(dataset: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(io.BytesIO(blob_read(dataset.sha256)), allow_pickle=False) as archive:
        X = archive["X"]
        y = archive["y"] if "y" in archive.files else None
    return X, y


def dataset_register(
    *,
    deployment: Deployment,
    kind: str,
    name: str,
    X: np.ndarray,
    y: np.ndarray | None,
    by: AbstractBaseUser | None,
    make_current: bool = True,
) -> Dataset:
    name = _dataset_name(name, kind)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != deployment.n_features:
        raise ValidationFailed(
            f"The dataset has shape {list(X.shape)}; the deployment needs n_rows × {deployment.n_features}."
        )
    if len(X) == 0:
        raise ValidationFailed("The dataset has no rows.")
    bad_rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad_rows):
        raise ValidationFailed(f"The dataset has NaN or infinite values, first in row {int(bad_rows[0])}.")
    if kind == Dataset.Kind.EVALUATION and y is None:
        raise ValidationFailed("An evaluation dataset needs labels.")
    if y is not None:
        y = np.asarray(y).astype(str)
        if len(y) != len(X):
            raise ValidationFailed(f"The dataset has {len(X)} rows but {len(y)} labels.")
        unknown = sorted(set(np.unique(y)) - set(deployment.class_labels))
        if unknown:
            raise ValidationFailed(f"The dataset has labels the deployment does not know: {unknown[:5]}.")
    data = dataset_to_bytes(X, y)
    with transaction.atomic():
        return _dataset_create(deployment, kind, name, blob_put(data), len(data), len(X), y is not None, by, make_current)


def dataset_upload(
    *, deployment: Deployment, kind: str, data: bytes, filename: str, name: str = "", by: AbstractBaseUser | None
) -> Dataset:
    """Register a dataset from the bytes of a CSV or Parquet file (monitoring/tabular.py), as the deployment's
    current one of its kind. The name defaults to the file's. Errors name the line (or row) and column."""
    name = _dataset_name(name or filename, kind)  # before the file is read: a bad name costs nothing
    try:
        table = tabular.read_dataset(data, filename=filename, feature_names=deployment.feature_names, limits=_file_limits())
    except tabular.TableError as exc:
        errors = [{"line": exc.line, "field": exc.column, "message": exc.message}] if exc.line or exc.column else []
        raise (TooLarge if exc.too_large else ValidationFailed)(exc.message, errors=errors) from None
    return dataset_register(deployment=deployment, kind=kind, name=name, X=table.X, y=table.y, by=by)


def _dataset_name(name: str, kind: str) -> str:
    if kind not in Dataset.Kind.values:
        raise ValidationFailed(f"A dataset's kind is one of {', '.join(Dataset.Kind.values)}.", errors=[
            {"field": "kind", "message": f"must be one of {', '.join(Dataset.Kind.values)}"}])
    name = name.strip() or kind
    limit = Dataset._meta.get_field("name").max_length
    if len(name) > limit:
        raise ValidationFailed(f"A dataset's name is at most {limit} characters; this one has {len(name)}.",
                               errors=[{"field": "name", "message": f"at most {limit} characters"}])
    return name


def _dataset_create(deployment, kind, name, sha, size, n_rows, has_labels, by, make_current) -> Dataset:
    dataset = Dataset.objects.create(
        deployment=deployment,
        kind=kind,
        name=name,
        sha256=sha,
        size_bytes=size,
        n_rows=n_rows,
        has_labels=has_labels,
        created_by=by,
    )
    if make_current:
        field = "reference_dataset" if kind == Dataset.Kind.REFERENCE else "evaluation_dataset"
        setattr(deployment, field, dataset)
        deployment.save(update_fields=[field])
        if kind == Dataset.Kind.REFERENCE:
            from workers.tasks import build_reference_profile_task

            # The drift profile is computed once, when the dataset becomes the reference (not at the first check).
            transaction.on_commit(lambda: build_reference_profile_task.delay(deployment.pk))
    audit_record(
        action="dataset.register",
        actor=by,
        actor_label="" if by else "system",
        deployment=deployment,
        obj=dataset,
        after={"kind": kind, "rows": n_rows, "sha256": sha, "current": make_current},
    )
    return dataset


# ---------------------------------------------------------------- API tokens

TOKEN_PREFIX = "wk"


def _hash_secret(secret: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def token_create(*, deployment: Deployment, name: str, by: AbstractBaseUser | None) -> tuple[ApiToken, str]:
    """Create a token and return it with its plaintext, which is never stored and shown only once."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        deployment=deployment, name=name or "token", prefix=prefix, secret_sha256=_hash_secret(secret), created_by=by
    )
    audit_record(action="token.create", actor=by, deployment=deployment, obj=token, after={"name": token.name, "prefix": prefix})
    return token, f"{TOKEN_PREFIX}_{prefix}_{secret}"


def token_authenticate(*, raw: str) -> ApiToken | None:
    """The live token matching `raw`, or None. Constant-time on the secret."""
    parts = (raw or "").strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    token = ApiToken.objects.select_related("deployment").filter(prefix=parts[1], revoked_at__isnull=True).first()
    if token is None or not secrets.compare_digest(token.secret_sha256, _hash_secret(parts[2])):
        return None
    now = timezone.now()
    # Touch at most once a minute: ingestion is hot, and this is only for display.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


@transaction.atomic
def token_revoke(*, token: ApiToken, by: AbstractBaseUser) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(action="token.revoke", actor=by, deployment=token.deployment, obj=token, after={"prefix": token.prefix})
    return token


# ---------------------------------------------------------------- people


@transaction.atomic
def user_create(
    *, username: str, password: str, team: Team, role: str, by: AbstractBaseUser | None = None, email: str = ""
) -> AbstractBaseUser:
    """Create a user who belongs to `team` with `role`. The password is checked by AUTH_PASSWORD_VALIDATORS."""
    User = get_user_model()
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}; choose one of {Role.values}.")
    if not username.strip():
        raise ValidationFailed("A user needs a username.")
    if User.objects.filter(username=username).exists():
        raise Conflict(f"A user named {username!r} already exists.")
    user = User(username=username, email=email)
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise ValidationFailed(
            "The password is too weak: " + " ".join(exc.messages),
            errors=[{"field": "password", "message": m} for m in exc.messages],
        ) from None
    user.set_password(password)
    user.save()
    Membership.objects.create(team=team, user=user, role=role)
    audit_record(
        action="user.create", actor=by, actor_label="" if by else "system", obj=user,
        after={"username": username, "team": team.slug, "role": role},
    )
    return user


@transaction.atomic
def membership_set(*, team: Team, user: AbstractBaseUser, role: str, by: AbstractBaseUser | None) -> Membership:
    """Give `user` `role` in `team`, adding them to it if need be."""
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}; choose one of {Role.values}.")
    current = Membership.objects.select_for_update().filter(team=team, user=user).first()
    before = {"team": team.slug, "role": current.role} if current is not None else None
    membership, _ = Membership.objects.update_or_create(team=team, user=user, defaults={"role": role})
    audit_record(
        action="membership.set", actor=by, actor_label="" if by else "system", obj=membership, before=before,
        after={"user": user.get_username(), "team": team.slug, "role": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, by: AbstractBaseUser | None) -> None:
    before = {"user": membership.user.get_username(), "team": membership.team.slug, "role": membership.role}
    audit_record(
        action="membership.remove", actor=by, actor_label="" if by else "system", obj=membership, before=before,
    )
    membership.delete()


# ---------------------------------------------------------------- ingestion


@dataclass(frozen=True)
class IngestResult:
    batch_id: int
    received: int
    created: int
    # True when this answer is the stored one of an earlier request with the same idempotency key.
    replayed: bool = False
    # The batch's PredictionBatch.State: "indexed", or for a large batch "pending" until the indexer has
    # taken its ids (seconds).
    status: str = PredictionBatch.State.PENDING


def _schema(deployment: Deployment) -> batches.Schema:
    return batches.Schema(
        feature_names=[str(name) for name in deployment.feature_names],
        class_labels=[str(label) for label in deployment.class_labels],
        allow_non_finite=deployment.allow_non_finite,
    )


def _replay(deployment: Deployment, key: str, *, fingerprint: str) -> IngestResult | None:
    """The stored answer to the batch with this key; a Conflict if the indexer has since rejected that batch.

    A key sent again with another body is a client bug (a reused or colliding key), not a retry: replaying
    would answer "stored" for rows that never were, so it is refused (422), as the IETF Idempotency-Key draft
    and Stripe do. The body is compared by the fingerprint stored in the batch's result.
    """
    stored = (
        PredictionBatch.objects.filter(deployment=deployment, idempotency_key=key)
        .values_list("pk", "state", "result")
        .first()
    )
    if stored is None:
        return None
    pk, state, result = stored
    # Batches stored before fingerprints were kept have none: they replay as they always did.
    if result.get("fingerprint", fingerprint) != fingerprint:
        raise ValidationFailed(
            f"Idempotency-Key reused with a different body: batch {pk} was stored under this key with other "
            "content. Send new content with a new key; resend the same content to retry."
        )
    if state == PredictionBatch.State.REJECTED:
        raise Conflict(f"Batch {pk} with this key was rejected: {result['message']}", errors=result["errors"])
    return IngestResult(batch_id=pk, received=result["received"], created=result["created"], replayed=True, status=state)


def _check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 200:
        raise ValidationFailed("The Idempotency-Key must be 1 to 200 characters.")
    return key


def predictions_ingest(*, deployment: Deployment, rows: list, idempotency_key: str | None = None) -> IngestResult:
    """Store a batch of production predictions as one columnar block, all or nothing.

    A retry is harmless: a batch with the idempotency key of a stored one (by default, a key derived
    from its content) is answered with the stored result and stores nothing. A new batch reusing an
    id already stored for the deployment is a conflict (409) and stores nothing.
    """
    if not isinstance(rows, list) or not rows:
        raise ValidationFailed("The batch must be a non-empty list of predictions.")
    if len(rows) > settings.MAX_PREDICTION_BATCH:
        raise TooLarge(f"The batch has {len(rows)} predictions; the limit is {settings.MAX_PREDICTION_BATCH}.")
    key = _check_key(idempotency_key)
    try:
        columns = batches.columns_from_rows(rows, _schema(deployment))
    except batches.BatchInvalid as exc:
        raise ValidationFailed(exc.message, errors=exc.errors) from None
    # The batch as validated, not its JSON text: the same rows with other spacing or key order are the same body.
    fingerprint = columns.content_key()
    return _batch_store(deployment, columns, key=key or fingerprint, fingerprint=fingerprint, source=PredictionBatch.Source.API)


def predictions_upload(
    *, deployment: Deployment, data: bytes, filename: str, idempotency_key: str | None = None
) -> IngestResult:
    """Store a CSV or Parquet file of predictions (columns id, timestamp, predicted_label, the features and
    optionally proba_<class>) as one block, all or nothing. Retries are answered like predictions_ingest."""
    fingerprint = f"sha256:{storage.sha256_hex(data)}"
    key = _check_key(idempotency_key) or fingerprint
    if (replay := _replay(deployment, key, fingerprint=fingerprint)) is not None:
        return replay
    schema = _schema(deployment)
    try:
        table = batches.read_table(
            data, filename=filename, choose=lambda names: batches.table_columns(names, schema), limits=_file_limits()
        )
        columns = batches.columns_from_table(table, schema)
    except batches.BatchInvalid as exc:
        raise ValidationFailed(exc.message, errors=exc.errors) from None
    except tablefiles.FileTooLarge as exc:
        raise TooLarge(exc.message) from None
    return _batch_store(deployment, columns, key=key, fingerprint=fingerprint, source=PredictionBatch.Source.UPLOAD)


def _file_limits() -> tablefiles.FileLimits:
    """What an uploaded file may hold, checked before it is decoded (monitoring/tablefiles.py)."""
    return tablefiles.FileLimits(max_rows=settings.MAX_UPLOAD_ROWS, max_decoded_bytes=settings.MAX_UPLOAD_UNCOMPRESSED_BYTES)


# Batches up to this size write their index rows in the request (a reused id is a 409 at once); larger
# ones, file uploads, leave them to the indexer (monitoring/indexing.py). At 10,000 rows the index costs
# the request 30–70 ms; at a million, seconds.
INDEX_IN_REQUEST_UP_TO = 10_000


def _batch_store(
    deployment: Deployment, columns: batches.Columns, *, key: str, fingerprint: str, source: str
) -> IngestResult:
    """Store the batch's columns as one row, and its index rows with it when it is small.

    Replays are found by the unique key when the insert fails, not by a query before it: retries are rare
    and the common path then costs one round trip less.
    """
    n = len(columns)
    index_now = n <= INDEX_IN_REQUEST_UP_TO
    state = PredictionBatch.State.INDEXED if index_now else PredictionBatch.State.PENDING
    now = timezone.now()
    result = {"received": n, "created": n, "fingerprint": fingerprint}
    fields = {
        "deployment_id": deployment.pk,
        "idempotency_key": key,
        "source": source,
        "state": state,
        "n_rows": n,
        "n_features": columns.features.shape[1],
        "result": result,
        "received_at": now,
        "indexed_at": now if index_now else None,
    }
    try:
        with transaction.atomic():
            fields |= _column_fields(columns)
            batch_id = _batch_copy(fields, columns) if _is_postgres() else _batch_orm(fields, columns)
            if index_now:
                indexing.write_rows(
                    deployment_id=deployment.pk, batch_id=batch_id, request_ids=columns.request_ids,
                    timestamps_us=columns.timestamps_us.astype(np.int64),
                )
            else:
                # robust: the batch is stored whatever happens to the broker; the beat sweep indexes it then.
                transaction.on_commit(lambda: _index_soon(deployment.pk), robust=True)
    except IntegrityError:
        # Either a retry (the batch's key is taken: answer as the first time), or some ids are.
        if (replay := _replay(deployment, key, fingerprint=fingerprint)) is not None:
            return replay
        if taken := indexing.taken_ids(deployment.pk, columns.request_ids):
            raise Conflict(
                f"{len(taken)} id(s) were already stored by another batch; nothing was stored. "
                "Resend a batch with its Idempotency-Key (or byte-identical content) to retry it.",
                errors=indexing.conflict_errors(columns.request_ids, taken),
            ) from None
        raise
    return IngestResult(batch_id=batch_id, received=n, created=n, status=state)


def _column_fields(columns: batches.Columns) -> dict[str, object]:
    """The batch row's column fields: the columns themselves, or for a large batch its timestamps and the
    sha256 of the .npz holding the rest (see PredictionBatch.columns_sha256)."""
    timestamps = {"timestamps_us": _little_endian(columns.timestamps_us, "<i8")}
    if columns.nbytes >= settings.BATCH_COLUMNS_IN_MEDIA_FROM_BYTES:
        empty = dict.fromkeys(["features", "predicted", "request_ids"], b"")
        return timestamps | empty | {"probabilities": None, "columns_sha256": blob_put(batches.columns_npz(columns))}
    return timestamps | {
        "features": _little_endian(columns.features, "<f4"),
        "predicted": _little_endian(columns.predicted, "<i2"),
        "probabilities": None if columns.probabilities is None else _little_endian(columns.probabilities, "<f4"),
        "request_ids": columns.joined_ids,
        "columns_sha256": "",
    }


def _index_soon(deployment_id: int) -> None:
    from workers.tasks import index_batches_soon

    index_batches_soon(deployment_id)


def batches_index(*, deployment_id: int, wait: bool = True) -> indexing.IndexOutcome:
    """Index the deployment's pending batches now, raising an alert with each rejection (in its transaction)."""

    def alert(batch: PredictionBatch) -> None:
        alert_raise(
            deployment=Deployment.objects.get(pk=deployment_id),
            kind=Alert.Kind.BATCH_REJECTED,
            dedup_key="batch-rejected",
            title=f"Prediction batch {batch.pk} was rejected",
            message=batch.result["message"],
        )

    return indexing.index_pending(deployment_id=deployment_id, wait=wait, on_reject=alert)


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


# Column types of the batch row, in COPY order (monitoring_predictionbatch as created by the migrations).
_BATCH_COLUMNS = [
    ("id", "int8"), ("deployment_id", "int8"), ("version_id", "int8"), ("idempotency_key", "text"),
    ("source", "text"), ("state", "text"), ("n_rows", "int4"), ("n_features", "int4"), ("t_min", "timestamptz"),
    ("t_max", "timestamptz"), ("timestamps_us", "bytea"), ("features", "bytea"), ("predicted", "bytea"),
    ("probabilities", "bytea"), ("request_ids", "bytea"), ("result", "jsonb"), ("received_at", "timestamptz"),
    ("indexed_at", "timestamptz"), ("columns_sha256", "text"),
]


def _batch_copy(fields: dict, columns: batches.Columns) -> int:
    """The batch row as one binary COPY: no hex-escaped bytea, no formatted timestamps."""
    import orjson

    batch_table = PredictionBatch._meta.db_table
    timestamps_us = columns.timestamps_us.astype(np.int64)
    values = fields | {
        "t_min": int(timestamps_us.min()), "t_max": int(timestamps_us.max()),
        "result": orjson.dumps(fields["result"]), "received_at": batches.datetime_to_us(fields["received_at"]),
        "indexed_at": None if fields["indexed_at"] is None else batches.datetime_to_us(fields["indexed_at"]),
    }
    # copy_expert is psycopg2's own: wrap_database_errors turns its errors into Django's (IntegrityError).
    with connection.cursor() as cursor, connection.wrap_database_errors:
        # One round trip for the batch's id and the version serving now.
        cursor.execute(
            f"SELECT nextval(pg_get_serial_sequence(%s, 'id')), (SELECT id FROM {ModelVersion._meta.db_table} "
            "WHERE deployment_id = %s AND status = %s LIMIT 1)",
            [batch_table, fields["deployment_id"], ModelVersion.Status.ACTIVE],
        )
        values["id"], values["version_id"] = batch_id, _ = cursor.fetchone()
        row = pgcopy.one_row([(values[name], kind) for name, kind in _BATCH_COLUMNS])
        cursor.copy_expert(
            f"COPY {batch_table} ({', '.join(name for name, _ in _BATCH_COLUMNS)}) FROM STDIN (FORMAT binary)",
            row, 1 << 20,  # 1 MB CopyData messages; positional for Django's debug cursor
        )
    return batch_id


def _little_endian(array: np.ndarray, dtype: str) -> memoryview:
    """The array's bytes as stored (see PredictionBatch), without a copy when it is already in that layout."""
    return memoryview(np.ascontiguousarray(array, dtype=dtype)).cast("B")


def _batch_orm(fields: dict, columns: batches.Columns) -> int:
    """SQLite (the embedded demo): the ORM."""
    batch = PredictionBatch.objects.create(
        **fields,
        version_id=getattr(Deployment.objects.get(pk=fields["deployment_id"]).active_version(), "pk", None),
        t_min=batches.us_to_datetime(columns.timestamps_us.min()),
        t_max=batches.us_to_datetime(columns.timestamps_us.max()),
    )
    return batch.pk


def _row_error(index: int, field: str, message: str) -> dict:
    return {"row": index, "field": field, "message": message}


@dataclass(frozen=True)
class LabelResult:
    received: int
    updated: int


def labels_ingest(*, deployment: Deployment, rows: list) -> LabelResult:
    """Attach ground-truth labels to stored predictions by id, all or nothing. Sending a label again overwrites it."""
    if not isinstance(rows, list) or not rows:
        raise ValidationFailed("The batch must be a non-empty list of labels.")
    if len(rows) > settings.MAX_LABEL_BATCH:
        raise TooLarge(f"The batch has {len(rows)} labels; the limit is {settings.MAX_LABEL_BATCH}.")
    return _labels_from_rows(deployment, rows)


def _labels_from_rows(deployment: Deployment, rows: list) -> LabelResult:
    classes = [str(label) for label in deployment.class_labels]
    index = {label: i for i, label in enumerate(classes)}
    errors: list[dict] = []
    wanted: dict[str, tuple[int, int]] = {}  # id -> (row, class index)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(_row_error(i, "", "must be an object"))
            continue
        request_id, label = row.get("id"), row.get("label")
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)) or str(request_id) == "":
            errors.append(_row_error(i, "id", "must be the id of a stored prediction"))
        elif label is None or isinstance(label, (bool, dict, list)) or str(label) not in index:
            errors.append(_row_error(i, "label", f"must be one of {classes}"))
        elif str(request_id) in wanted and wanted[str(request_id)][1] != index[str(label)]:
            errors.append(_row_error(i, "id", f"id {request_id!r} appears twice with different labels (also row {wanted[str(request_id)][0]})"))
        else:
            wanted.setdefault(str(request_id), (i, index[str(label)]))
        if len(errors) >= 100:
            break
    if errors:
        raise ValidationFailed(f"{len(errors)} label(s) are invalid; nothing was stored.", errors=errors)
    ids = list(wanted)
    return _labels_store(deployment, ids, [wanted[i][0] for i in ids], np.array([wanted[i][1] for i in ids], dtype=np.int16), len(rows))


def _labels_store(deployment: Deployment, ids: list[str], rows: list[int], codes: np.ndarray, received: int) -> LabelResult:
    # Labels join on the index: the batches accepted a moment ago must be in it first.
    batches_index(deployment_id=deployment.pk)
    now = timezone.now()
    with transaction.atomic():
        if _is_postgres():
            updated, unknown = _labels_copy(deployment, ids, rows, codes, now)
        else:
            updated, unknown = _labels_orm(deployment, ids, rows, codes, now)
        if unknown:
            # Raising inside the transaction undoes the update: a batch with one unknown id stores nothing.
            raise ValidationFailed(
                f"{len(unknown)} label(s) name no stored prediction; nothing was stored.",
                errors=[_row_error(row, "id", f"no prediction with id {request_id!r}") for row, request_id in unknown[:100]],
            )
    return LabelResult(received=received, updated=updated)


def _labels_copy(deployment, ids, rows, codes, now) -> tuple[int, list[tuple[int, str]]]:
    """Labels through a temporary table: one COPY and one UPDATE ... FROM, whatever the batch size."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(
        pa.table({"row": pa.array(rows, type=pa.int64()), "request_id": pa.array(ids, type=pa.string()),
                  "label_index": pa.array(codes, type=pa.int16())}),
        buffer, pacsv.WriteOptions(include_header=False),
    )
    buffer.seek(0)
    table = Prediction._meta.db_table
    with connection.cursor() as cursor, connection.wrap_database_errors:
        # ON COMMIT DROP and TRUNCATE: the table lives for this transaction, even when a caller's transaction
        # ingests several label batches.
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS wk_labels_in (row integer, request_id text, label_index smallint) ON COMMIT DROP"
        )
        cursor.execute("TRUNCATE wk_labels_in")
        cursor.copy_expert("COPY wk_labels_in FROM STDIN WITH (FORMAT csv)", buffer)
        cursor.execute(
            f"UPDATE {table} p SET label_index = l.label_index, labelled_at = %s FROM wk_labels_in l "
            "WHERE p.deployment_id = %s AND p.request_id = l.request_id",
            [now, deployment.pk],
        )
        updated = cursor.rowcount
        unknown: list[tuple[int, str]] = []
        if updated != len(ids):
            cursor.execute(
                f"SELECT l.row, l.request_id FROM wk_labels_in l LEFT JOIN {table} p "
                "ON p.deployment_id = %s AND p.request_id = l.request_id WHERE p.request_id IS NULL ORDER BY l.row LIMIT 100",
                [deployment.pk],
            )
            unknown = [(int(row), request_id) for row, request_id in cursor.fetchall()]
    return updated, unknown


def _labels_orm(deployment, ids, rows, codes, now) -> tuple[int, list[tuple[int, str]]]:
    known: set[str] = set()
    for start in range(0, len(ids), 500):  # SQLite allows at most 999 parameters per statement
        known |= set(
            Prediction.objects.filter(deployment=deployment, request_id__in=ids[start : start + 500]).values_list("request_id", flat=True)
        )
    unknown = [(row, request_id) for row, request_id in zip(rows, ids) if request_id not in known]
    if unknown:
        return 0, unknown
    updated = 0
    for code in np.unique(codes):
        chosen = [request_id for request_id, c in zip(ids, codes) if c == code]
        for start in range(0, len(chosen), 500):
            updated += Prediction.objects.filter(deployment=deployment, request_id__in=chosen[start : start + 500]).update(
                label_index=int(code), labelled_at=now
            )
    return updated, []


def labels_upload(*, deployment: Deployment, data: bytes, filename: str) -> LabelResult:
    """Labels from a CSV or Parquet file with columns id and label, all or nothing."""
    import pyarrow as pa

    try:
        table = batches.read_table(data, filename=filename, choose=batches.label_columns, limits=_file_limits())
    except batches.BatchInvalid as exc:
        raise ValidationFailed(exc.message, errors=exc.errors) from None
    except tablefiles.FileTooLarge as exc:
        raise TooLarge(exc.message) from None
    ids = table.column("id").cast(pa.string()).to_pylist()
    labels = table.column("label").cast(pa.string()).to_pylist()
    rows = [{"id": i, "label": label} for i, label in zip(ids, labels)]
    if not rows:
        raise ValidationFailed("The file has no rows.")
    return _labels_from_rows(deployment, rows)


# ---------------------------------------------------------------- evaluation, drift, alerts


def alert_raise(
    *,
    deployment: Deployment,
    kind: str,
    dedup_key: str,
    title: str,
    message: str = "",
    severity: str = Alert.Severity.WARNING,
    drift_report: DriftReport | None = None,
    evaluation_run: EvaluationRun | None = None,
) -> tuple[Alert, bool]:
    """Open an alert, or refresh the unresolved one with the same key. Returns (alert, created)."""
    now = timezone.now()
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update()
            .filter(deployment=deployment, dedup_key=dedup_key, status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED])
            .first()
        )
        if alert is not None:
            alert.occurrences += 1
            alert.last_seen_at = now
            alert.title, alert.message = title, message
            alert.drift_report = drift_report or alert.drift_report
            alert.evaluation_run = evaluation_run or alert.evaluation_run
            alert.save()
            return alert, False
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    deployment=deployment,
                    kind=kind,
                    severity=severity,
                    dedup_key=dedup_key,
                    title=title,
                    message=message,
                    drift_report=drift_report,
                    evaluation_run=evaluation_run,
                    created_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:  # another worker opened it a moment ago
            alert = Alert.objects.get(deployment=deployment, dedup_key=dedup_key, status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED])
            return alert, False
        audit_record(
            action="alert.open", actor=None, actor_label="worker", deployment=deployment, obj=alert, after={"title": title}
        )
    return alert, True


def alert_resolve_key(*, deployment: Deployment, dedup_key: str) -> int:
    """Resolve the unresolved alert with this key when its condition has cleared."""
    return Alert.objects.filter(
        deployment=deployment, dedup_key=dedup_key, status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED]
    ).update(status=Alert.Status.RESOLVED, resolved_at=timezone.now())


@transaction.atomic
def alert_set_status(*, alert: Alert, status: str, by: AbstractBaseUser) -> Alert:
    if status not in (Alert.Status.ACKNOWLEDGED, Alert.Status.RESOLVED):
        raise ValidationFailed("An alert can be acknowledged or resolved.")
    before = {"status": alert.status}
    alert.status = status
    if status == Alert.Status.RESOLVED:
        alert.resolved_at = timezone.now()
    alert.save()
    audit_record(action=f"alert.{status}", actor=by, deployment=alert.deployment, obj=alert, before=before, after={"status": status})
    return alert


def evaluation_complete(*, run: EvaluationRun, metrics: dict, raise_alerts: bool = True) -> EvaluationRun:
    """Store a finished run's metrics as time series and check the deployment's thresholds.

    Idempotent: completing a run twice rewrites its points instead of adding more.
    """
    from monitoring.metrics import SCALAR_METRICS

    deployment = run.deployment
    with transaction.atomic():
        run.metrics = metrics
        run.n_rows = int(metrics.get("n_rows", run.n_rows))
        run.status = EvaluationRun.Status.SUCCEEDED
        run.finished_at = timezone.now()
        run.error = ""
        run.save()
        run.points.all().delete()
        series = [name for name in SCALAR_METRICS if metrics.get(name) is not None]
        series += [name for name in metrics if name.startswith(("latency_", "throughput_")) and metrics[name] is not None]
        MetricPoint.objects.bulk_create(
            MetricPoint(
                deployment=deployment, version=run.version, run=run, source=run.source, name=name,
                value=float(metrics[name]), at=run.measured_at,
            )
            for name in series
        )
    # Only the serving version's numbers speak for the deployment's health; candidates are compared, not alerted on.
    if raise_alerts and run.version.status == ModelVersion.Status.ACTIVE:
        for metric, floor in deployment.metric_thresholds.items():
            value = metrics.get(metric)
            key = f"metric:{metric}:{run.source}"
            if value is not None and value < floor:
                alert_raise(
                    deployment=deployment,
                    kind=Alert.Kind.METRIC_BELOW_THRESHOLD,
                    dedup_key=key,
                    severity=Alert.Severity.CRITICAL,
                    title=f"{metric} {value:.3f} is below {floor:.3f} on the {run.get_source_display().lower()}",
                    message=f"v{run.version.number} scored {value:.4f} on {run.n_rows} rows (floor {floor}).",
                    evaluation_run=run,
                )
            elif value is not None:
                alert_resolve_key(deployment=deployment, dedup_key=key)
    return run


def evaluation_start(
    *,
    version: ModelVersion,
    source: str,
    dataset: Dataset | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    measured_at: datetime | None = None,
    job: MaintenanceJob | None = None,
) -> EvaluationRun:
    """A running evaluation: the row exists before the work, so a crash leaves a trace."""
    return EvaluationRun.objects.create(
        deployment=version.deployment,
        version=version,
        source=source,
        dataset=dataset,
        window_start=window_start,
        window_end=window_end,
        status=EvaluationRun.Status.RUNNING,
        measured_at=measured_at or timezone.now(),
        job=job,
    )


def evaluation_fail(*, run: EvaluationRun, error: str) -> EvaluationRun:
    run.status = EvaluationRun.Status.FAILED
    run.error = error[:2000]
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    return run


@transaction.atomic
def drift_report_record(
    *,
    deployment: Deployment,
    result,  # monitoring.drift.DriftResult
    window_start: datetime,
    window_end: datetime,
    reference_dataset: Dataset | None,
    multivariate: dict | None = None,
    performance: dict | None = None,
    profile: ReferenceProfile | None = None,
) -> DriftReport:
    """Store a drift check's result and its per-feature series points; a re-run for the same window updates the
    one report for it (and replaces its points)."""
    report, _ = DriftReport.objects.update_or_create(
        deployment=deployment,
        window_start=window_start,
        window_end=window_end,
        defaults={
            "reference_dataset": reference_dataset,
            "n_reference": result.n_reference,
            "n_current": result.n_current,
            "features": result.features_as_dicts(),
            "n_drifted": result.n_drifted,
            "share_drifted": result.share_drifted,
            "drifted": result.drifted,
            "prediction_drift": result.prediction_drift,
            "multivariate": multivariate or {},
            "performance": performance or {},
            "drift_share": result.drift_share,
            "correction": result.correction,
            "profile": profile,
        },
    )
    report.points.all().delete()
    DriftFeaturePoint.objects.bulk_create(
        DriftFeaturePoint(
            report=report, deployment=deployment, feature=f.feature, at=window_end, test=f.test,
            statistic=f.statistic, p_value=f.p_value, threshold=f.threshold, moved=f.moved, drifted=f.drifted,
        )
        for f in result.features
    )
    return report


def reference_profile_store(*, dataset: Dataset, model_sha256: str, data: bytes, n_rows: int) -> ReferenceProfile:
    """Keep a built profile (bytes of monitoring.drift.ReferenceProfile) as a blob; building the same profile
    twice, e.g. by two workers at once, keeps the first row."""
    with transaction.atomic():
        sha = blob_put(data)
        profile, _ = ReferenceProfile.objects.get_or_create(
            dataset=dataset, model_sha256=model_sha256, defaults={"sha256": sha, "size_bytes": len(data), "n_rows": n_rows}
        )
    return profile


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


# ---------------------------------------------------------------- maintenance jobs


@transaction.atomic
def job_queue(
    *, version: ModelVersion, kind: str, by: AbstractBaseUser | None, params: dict | None = None
) -> MaintenanceJob:
    if kind not in MaintenanceJob.Kind.values:
        raise ValidationFailed(f"Unknown job kind {kind!r}; choose one of {MaintenanceJob.Kind.values}.")
    from monitoring import selectors
    from workers.applicability import BadParams, clean_params

    # Refuse what cannot work, from what is known now (graph, recipe, datasets): never queue a job bound to fail.
    option = next(o for o in selectors.job_options(version=version) if o.kind == kind)
    if not option.applicable:
        raise ValidationFailed(f"Cannot queue {option.label.lower()} of v{version.number}: {option.reason}")
    try:
        params = clean_params(kind, params)
    except BadParams as exc:
        raise ValidationFailed(str(exc)) from None
    job = MaintenanceJob.objects.create(
        deployment=version.deployment, source_version=version, kind=kind, params=params, requested_by=by
    )
    audit_record(
        action="job.queue", actor=by, deployment=version.deployment, obj=job,
        after={"kind": kind, "source_version": version.number, "params": params},
    )
    from workers.tasks import run_maintenance_job_task

    transaction.on_commit(lambda: run_maintenance_job_task.delay(job.pk))
    return job


@transaction.atomic
def job_cancel(*, job: MaintenanceJob, by: AbstractBaseUser) -> MaintenanceJob:
    updated = MaintenanceJob.objects.filter(
        pk=job.pk, status__in=[MaintenanceJob.Status.QUEUED, MaintenanceJob.Status.RUNNING]
    ).update(status=MaintenanceJob.Status.CANCELLED, finished_at=timezone.now(), progress_message="Cancelled")
    if not updated:
        raise Conflict("The job has already finished.")
    job.refresh_from_db()
    audit_record(action="job.cancel", actor=by, deployment=job.deployment, obj=job, after={"status": job.status})
    return job


# ---------------------------------------------------------------- stored comparisons (the approval page)


# Longer than compare_versions_task's hard time limit (10 minutes): a comparison queued or running for this
# long has lost its task (a worker died, a message was lost), and the next page view queues it again.
COMPARISON_LOST_AFTER = timedelta(minutes=15)


def _comparison_due(row: VersionComparisonResult, now: datetime) -> bool:
    """Whether a stored comparison should be computed again: lost, or finished and out of date.

    A production window moves, so its comparison is renewed as often as the scheduled evaluation renews the
    health charts (EVALUATION_INTERVAL_MINUTES); a failed one is retried at that pace too. An evaluation-set
    comparison that succeeded is final: the rows and both models are fixed.
    """
    Status = VersionComparisonResult.Status
    if row.status == Status.QUEUED:
        return row.queued_at < now - COMPARISON_LOST_AFTER
    if row.status == Status.RUNNING:
        return (row.started_at or row.queued_at) < now - COMPARISON_LOST_AFTER
    fresh_for = timedelta(minutes=settings.EVALUATION_INTERVAL_MINUTES)
    if row.status == Status.SUCCEEDED and row.source == VersionComparisonResult.Source.EVALUATION_SET:
        return False
    return (row.computed_at or row.queued_at) < now - fresh_for


@transaction.atomic
def comparisons_request(*, candidate: ModelVersion, active: ModelVersion) -> list[VersionComparisonResult]:
    """The stored comparisons of `candidate` against `active` on the deployment's current sources of labelled
    rows; the missing and the due ones (see _comparison_due) are queued for a worker.

    Called on every view of the approval page: one query when everything is stored and fresh. Not audited: a
    comparison is derived data, recomputable at any time, and decides nothing by itself.
    """
    from monitoring import selectors
    from workers.tasks import compare_versions_task

    now = timezone.now()
    sources = selectors.comparison_sources(deployment=candidate.deployment)
    stored = {
        row.window_key: row
        for row in VersionComparisonResult.objects.filter(
            active=active, candidate=candidate, window_key__in=[source.window_key for source in sources]
        )
    }
    rows, queued = [], []
    for source in sources:
        row = stored.get(source.window_key)
        if row is None:
            row, created = VersionComparisonResult.objects.get_or_create(
                active=active, candidate=candidate, window_key=source.window_key,
                defaults={
                    "deployment": candidate.deployment, "source": source.source, "description": source.description,
                    "dataset": source.dataset, "window_days": source.window_days, "queued_at": now,
                },
            )
            if created:
                queued.append(row.pk)
        # Conditional on the state just read: of two views that find it due at once, one queues it.
        elif _comparison_due(row, now) and VersionComparisonResult.objects.filter(
            pk=row.pk, status=row.status, queued_at=row.queued_at
        ).update(status=VersionComparisonResult.Status.QUEUED, queued_at=now, started_at=None):
            row.refresh_from_db()
            queued.append(row.pk)
        rows.append(row)
    for pk in queued:
        transaction.on_commit(lambda pk=pk: compare_versions_task.delay(pk))
    return rows


def comparison_complete(
    *, result_id: int, statistics: dict | None, n_rows: int, window_start: datetime | None,
    window_end: datetime | None,
) -> bool:
    """Store a worker's statistics (None: the source had no rows). False when the row was no longer running."""
    return bool(VersionComparisonResult.objects.filter(
        pk=result_id, status=VersionComparisonResult.Status.RUNNING
    ).update(
        status=VersionComparisonResult.Status.SUCCEEDED, statistics=statistics, n_rows=n_rows,
        window_start=window_start, window_end=window_end, error="", computed_at=timezone.now(),
    ))


def comparison_fail(*, result_id: int, error: str) -> bool:
    """Mark a running comparison failed; earlier statistics stay for the page. False when it was not running."""
    return bool(VersionComparisonResult.objects.filter(
        pk=result_id, status=VersionComparisonResult.Status.RUNNING
    ).update(status=VersionComparisonResult.Status.FAILED, error=error[:2000], computed_at=timezone.now()))
