"""Personal access tokens and team service tokens for the management API (see monitoring/token_models.py)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from monitoring.models import MachineToken, Membership, Role, Team
from monitoring.services.audit import audit_record
from monitoring.services.errors import ValidationFailed

SCHEMES = {"wkp": MachineToken.Kind.PERSONAL, "wks": MachineToken.Kind.SERVICE}
# A token nobody rotates is a token nobody remembers: personal tokens expire, a year at most (GitHub's
# fine-grained tokens cap at a year too). Service tokens may be told to never expire, for a CI pipeline.
PERSONAL_DEFAULT_DAYS = 90
MAX_DAYS = 366
# last_used_at is for display ("used 3 minutes ago"): written at most once a minute, not on every request.
TOUCH_EVERY = timedelta(minutes=1)


def _hash_secret(secret: str) -> str:
    # 256 bits of randomness: a fast hash is enough (no password stretching needed).
    return hashlib.sha256(secret.encode()).hexdigest()


def _expiry(days: int | None, *, required: bool) -> datetime | None:
    if days is None:
        if required:
            days = PERSONAL_DEFAULT_DAYS
        else:
            return None
    if not 1 <= days <= MAX_DAYS:
        raise ValidationFailed(
            f"expires_in_days must be between 1 and {MAX_DAYS}.",
            errors=[{"field": "expires_in_days", "message": f"between 1 and {MAX_DAYS}"}],
        )
    return timezone.now() + timedelta(days=days)


def _new_secret() -> tuple[str, str]:
    prefix = secrets.token_hex(4)
    while MachineToken.objects.filter(prefix=prefix).exists():  # 2^32 prefixes: a clash is rare, not impossible
        prefix = secrets.token_hex(4)
    return prefix, secrets.token_urlsafe(32)


def _state(token: MachineToken) -> dict:
    return {
        "kind": token.kind, "name": token.name, "prefix": token.display, "role": token.role or None,
        "team": token.team.slug if token.team else None, "user": token.user.get_username(),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }


@transaction.atomic
def personal_token_create(
    *, user: AbstractBaseUser, name: str, expires_in_days: int | None = None
) -> tuple[MachineToken, str]:
    """A token that acts as `user` (their own role in each team). Returns it with its plaintext, shown once."""
    prefix, secret = _new_secret()
    token = MachineToken.objects.create(
        kind=MachineToken.Kind.PERSONAL, user=user, name=name.strip() or "token", prefix=prefix,
        secret_sha256=_hash_secret(secret), created_by=user,
        expires_at=_expiry(expires_in_days, required=True),
    )
    audit_record(action="token.personal.create", actor=user, obj=token, after=_state(token))
    return token, f"wkp_{prefix}_{secret}"


@transaction.atomic
def service_token_create(
    *, team: Team, name: str, role: str, by: AbstractBaseUser, expires_in_days: int | None = None
) -> tuple[MachineToken, str]:
    """A token for a machine of the team's, with a role of its own. The approver role only while the team
    allows service tokens to approve. Returns it with its plaintext, shown once."""
    may_approve = Team.objects.filter(pk=team.pk).values_list("service_tokens_may_approve", flat=True).get()  # as now
    allowed = [Role.VIEWER, Role.OPERATOR] + ([Role.APPROVER] if may_approve else [])
    if role not in allowed:
        hint = "" if may_approve else " (approving stays with people unless the team allows it)"
        raise ValidationFailed(
            f"A service token's role is one of {', '.join(allowed)}{hint}.",
            errors=[{"field": "role", "message": f"one of {', '.join(allowed)}"}],
        )
    prefix, secret = _new_secret()
    bot = get_user_model()(username=f"wks_{prefix}", first_name=(name.strip() or "service token")[:150])
    bot.set_unusable_password()  # it can never log in; only its token opens the API
    bot.save()
    Membership.objects.create(team=team, user=bot, role=role)
    token = MachineToken.objects.create(
        kind=MachineToken.Kind.SERVICE, user=bot, team=team, role=role, name=name.strip() or "service token",
        prefix=prefix, secret_sha256=_hash_secret(secret), created_by=by,
        expires_at=_expiry(expires_in_days, required=False),
    )
    audit_record(action="token.service.create", actor=by, obj=token, after=_state(token))
    return token, f"wks_{prefix}_{secret}"


@transaction.atomic
def machine_token_revoke(*, token: MachineToken, by: AbstractBaseUser) -> MachineToken:
    """Revoke now; revoking twice is harmless. A service token's user is deactivated with it."""
    token = MachineToken.objects.select_for_update(of=("self",)).select_related("user", "team").get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        if token.kind == MachineToken.Kind.SERVICE:
            type(token.user).objects.filter(pk=token.user_id).update(is_active=False)
        audit_record(action=f"token.{token.kind}.revoke", actor=by, obj=token, before=_state(token),
                     after={"revoked_at": token.revoked_at.isoformat()})
    return token


def machine_token_authenticate(*, raw: str, touch: bool = True) -> MachineToken | None:
    """The live personal or service token matching `raw` (user loaded), or None: unknown, wrong secret,
    revoked, expired, or its user deactivated. Constant-time on the secret. `touch=False` for a look that is
    not a use (the upload-size check, before the endpoint decides)."""
    parts = (raw or "").strip().split("_", 2)
    if len(parts) != 3 or parts[0] not in SCHEMES:
        return None
    token = (
        MachineToken.objects.select_related("user", "team")
        .filter(prefix=parts[1], kind=SCHEMES[parts[0]]).first()
    )
    if token is None or not secrets.compare_digest(token.secret_sha256, _hash_secret(parts[2])):
        return None
    now = timezone.now()
    if not token.is_live(now) or not token.user.is_active:
        return None
    if touch and (token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY):
        # Conditional, so concurrent requests in the same minute write once between them.
        MachineToken.objects.filter(pk=token.pk, last_used_at=token.last_used_at).update(last_used_at=now)
    return token


@transaction.atomic
def team_service_approval_set(*, team: Team, allowed: bool, by: AbstractBaseUser) -> Team:
    """Let the team's service tokens hold the approver role, or not. Turning it off demotes every service token
    that holds it to operator, at once: approving is back with people."""
    team = Team.objects.select_for_update().get(pk=team.pk)
    if team.service_tokens_may_approve == allowed:
        return team
    demoted: list[str] = []
    if not allowed:
        tokens = MachineToken.objects.filter(team=team, kind=MachineToken.Kind.SERVICE, role=Role.APPROVER)
        demoted = [f"wks_{prefix}" for prefix in tokens.values_list("prefix", flat=True)]
        Membership.objects.filter(team=team, user__machine_tokens__in=tokens).update(role=Role.OPERATOR)
        tokens.update(role=Role.OPERATOR)
    team.service_tokens_may_approve = allowed
    team.save(update_fields=["service_tokens_may_approve"])
    audit_record(
        action="team.service_approval", actor=by, obj=team,
        before={"service_tokens_may_approve": not allowed}, after={"service_tokens_may_approve": allowed, "demoted": demoted},
    )
    return team
