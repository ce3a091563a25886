"""Who may see what: a user's role on a deployment or in a team."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from monitoring.models import (
    ROLE_RANK,
    Deployment,
    Membership,
    Role,
    Team,
)


def role_for(*, user: AbstractBaseUser, deployment: Deployment) -> str | None:
    """The user's role on a deployment through its team; superusers approve everywhere."""
    return team_role_for(user=user, team_id=deployment.team_id)


def team_role_for(*, user: AbstractBaseUser, team_id: int) -> str | None:
    """The user's role in a team (None for a non-member, or a user who cannot log in); superusers approve."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.APPROVER
    return Membership.objects.filter(team_id=team_id, user=user).values_list("role", flat=True).first()


def role_allows(role: str | None, need: str) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(need)]


def deployments_visible_to(*, user: AbstractBaseUser) -> QuerySet[Deployment]:
    deployments = Deployment.objects.select_related("team")
    if user.is_superuser:
        return deployments
    return deployments.filter(team__memberships__user=user).distinct()


def teams_where(*, user: AbstractBaseUser, need: str) -> list[Team]:
    """The teams in which the user holds at least `need` (every team, for a superuser), by name."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return list(Team.objects.order_by("name"))
    wanted = [role for role in Role.values if role_allows(role, need)]
    return list(Team.objects.filter(memberships__user=user, memberships__role__in=wanted).order_by("name").distinct())
