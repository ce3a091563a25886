"""API tokens, users and team memberships."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from monitoring.models import (
    ApiToken,
    Deployment,
    Membership,
    Role,
    Team,
)
from monitoring.services.audit import audit_record
from monitoring.services.errors import Conflict, ValidationFailed
from monitoring.services.serving import serving_tokens_revoked

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
        serving_tokens_revoked()  # the serving endpoints' token cache, in every web process, at commit
    return token


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
