"""Machine access: your personal access tokens, and a team's service tokens and their approval setting.

Tokens are created and revoked from a dashboard session only (a token that could mint tokens would outlive its
own expiry and revocation); listing works with any credential. The plaintext is in the create response only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status

from dashboard.access import APPROVE, VIEW, get_team_for
from dashboard.api.auth import management_auth, require_session, user_of
from dashboard.api.errors import error_responses
from dashboard.api.pagination import Pages
from monitoring import services
from monitoring.models import MachineToken, Team
from monitoring.services.machine_tokens import MAX_DAYS, PERSONAL_DEFAULT_DAYS

router = Router(auth=management_auth, tags=["machine access"])

WRITE_ERRORS = error_responses(401, 403, 404, 422)


class PersonalTokenIn(Schema):
    name: str = Field("", max_length=100, description="What it is for, e.g. 'CI: register versions'")
    expires_in_days: int = Field(PERSONAL_DEFAULT_DAYS, ge=1, le=MAX_DAYS)


class ServiceTokenIn(Schema):
    name: str = Field("", max_length=100)
    role: Literal["viewer", "operator", "approver"] = Field(
        description="viewer or operator; approver only while the team's service_tokens_may_approve is on"
    )
    expires_in_days: int | None = Field(None, ge=1, le=MAX_DAYS, description="None: until revoked")


class MachineTokenOut(Schema):
    kind: Literal["personal", "service"]
    prefix: str = Field(description="The public part, e.g. wkp_ab12cd34: the token reads <prefix>_<secret>")
    name: str
    team: str | None = Field(description="A service token's team")
    role: str | None = Field(description="A service token's role (a personal token has its owner's)")
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute")
    revoked_at: datetime | None

    @staticmethod
    def resolve_prefix(obj: MachineToken) -> str:
        return obj.display

    @staticmethod
    def resolve_team(obj: MachineToken) -> str | None:
        return obj.team.slug if obj.team else None

    @staticmethod
    def resolve_role(obj: MachineToken) -> str | None:
        return obj.role or None

    @staticmethod
    def resolve_created_by(obj: MachineToken) -> str | None:
        return obj.created_by.get_username() if obj.created_by else None


class MachineTokenCreatedOut(MachineTokenOut):
    token: str = Field(description="The whole token, shown only this once; only its hash is stored")


class TeamSettingsIn(Schema):
    service_tokens_may_approve: bool = Field(
        description="Let service tokens hold the approver role. Off again: those tokens become operators at once."
    )


class TeamSettingsOut(Schema):
    slug: str
    name: str
    service_tokens_may_approve: bool


def _scheme_split(prefix: str) -> str:
    return prefix.split("_", 1)[1] if "_" in prefix else prefix


# ---------------------------------------------------------------- personal access tokens


@router.get("/me/tokens", response={200: list[MachineTokenOut], **error_responses(401, 422)},
            summary="List your personal access tokens")
@paginate(Pages)
def personal_token_list(request: HttpRequest) -> QuerySet[MachineToken]:
    """Newest first, revoked and expired ones included (they show when they stopped)."""
    return MachineToken.objects.filter(user_id=user_of(request).pk, kind=MachineToken.Kind.PERSONAL).select_related(
        "team", "created_by")


@router.post("/me/tokens", response={201: MachineTokenCreatedOut, **WRITE_ERRORS},
             summary="Create a personal access token")
def personal_token_create(request: HttpRequest, payload: PersonalTokenIn) -> Status:
    """From a session only. The token acts as you, with your role in each of your teams; it expires after
    `expires_in_days` (at most a year). Send it as `Authorization: Bearer wkp_…`."""
    require_session(request, "Creating a personal access token")
    token, plaintext = services.personal_token_create(
        user=user_of(request), name=payload.name, expires_in_days=payload.expires_in_days
    )
    token.token = plaintext  # type: ignore[attr-defined]  # for this response only; never stored
    return Status(201, token)


@router.delete("/me/tokens/{prefix}", response={200: MachineTokenOut, **WRITE_ERRORS},
               summary="Revoke a personal access token")
def personal_token_revoke(request: HttpRequest, prefix: str) -> MachineToken:
    """From a session only. Revoking twice is harmless. `prefix` as listed (wkp_ab12cd34) or without wkp_."""
    require_session(request, "Revoking a personal access token")
    token = get_object_or_404(
        MachineToken.objects.filter(user_id=user_of(request).pk, kind=MachineToken.Kind.PERSONAL),
        prefix=_scheme_split(prefix),
    )
    return services.machine_token_revoke(token=token, by=user_of(request))


# ---------------------------------------------------------------- team service tokens


@router.get("/teams/{team}/service-tokens", response={200: list[MachineTokenOut], **error_responses(401, 403, 404, 422)},
            summary="List a team's service tokens")
@paginate(Pages)
def service_token_list(request: HttpRequest, team: str) -> QuerySet[MachineToken]:
    """Needs the approver role: service tokens decide which machines act for the team."""
    team_obj = get_team_for(user_of(request), team, need=APPROVE)
    return MachineToken.objects.filter(team=team_obj, kind=MachineToken.Kind.SERVICE).select_related("team", "created_by")


@router.post("/teams/{team}/service-tokens", response={201: MachineTokenCreatedOut, **WRITE_ERRORS},
             summary="Create a service token")
def service_token_create(request: HttpRequest, team: str, payload: ServiceTokenIn) -> Status:
    """Needs the approver role, from a session. The token is a member of the team with `role`; its actions are
    audited under its name, wks_<prefix>. Send it as `Authorization: Bearer wks_…`."""
    require_session(request, "Creating a service token")
    team_obj = get_team_for(user_of(request), team, need=APPROVE)
    token, plaintext = services.service_token_create(
        team=team_obj, name=payload.name, role=payload.role, by=user_of(request), expires_in_days=payload.expires_in_days
    )
    token.token = plaintext  # type: ignore[attr-defined]
    return Status(201, token)


@router.delete("/teams/{team}/service-tokens/{prefix}", response={200: MachineTokenOut, **WRITE_ERRORS},
               summary="Revoke a service token")
def service_token_revoke(request: HttpRequest, team: str, prefix: str) -> MachineToken:
    """Needs the approver role, from a session. Revoking twice is harmless."""
    require_session(request, "Revoking a service token")
    team_obj = get_team_for(user_of(request), team, need=APPROVE)
    token = get_object_or_404(
        MachineToken.objects.filter(team=team_obj, kind=MachineToken.Kind.SERVICE), prefix=_scheme_split(prefix)
    )
    return services.machine_token_revoke(token=token, by=user_of(request))


@router.get("/teams/{team}", response={200: TeamSettingsOut, **error_responses(401, 404)}, summary="Get a team")
def team_detail(request: HttpRequest, team: str) -> Team:
    return get_team_for(user_of(request), team, need=VIEW)


@router.put("/teams/{team}", response={200: TeamSettingsOut, **WRITE_ERRORS}, summary="Change a team's settings")
def team_update(request: HttpRequest, team: str, payload: TeamSettingsIn) -> Team:
    """Needs the approver role, from a session."""
    require_session(request, "Changing who may approve")
    team_obj = get_team_for(user_of(request), team, need=APPROVE)
    return services.team_service_approval_set(team=team_obj, allowed=payload.service_tokens_may_approve,
                                              by=user_of(request))
