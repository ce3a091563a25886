"""Who may see and do what. Every view and API call gets its objects through here.

Roles are per team (viewer < operator < approver). An outsider gets 404, not 403,
so the existence of another team's deployment is not revealed.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from monitoring.models import (
    Alert,
    AlertGroup,
    Deployment,
    MaintenanceJob,
    ModelVersion,
    NotificationChannel,
    Role,
    RoutingRule,
    Silence,
    Team,
)
from monitoring.selectors import role_allows, role_for, team_role_for

VIEW, OPERATE, APPROVE = Role.VIEWER, Role.OPERATOR, Role.APPROVER


def _authorise(user: AbstractBaseUser, deployment: Deployment, need: str) -> None:
    role = role_for(user=user, deployment=deployment)
    if role is None:
        raise Http404("No such deployment")
    if not role_allows(role, need):
        raise PermissionDenied(f"This needs the {Role(need).label.lower()} role on {deployment.team}.")


def get_deployment_for(user: AbstractBaseUser, slug: str, *, need: str = VIEW) -> Deployment:
    deployment = Deployment.objects.select_related("team").filter(slug=slug).first()
    if deployment is None:
        raise Http404("No such deployment")
    _authorise(user, deployment, need)
    return deployment


def get_version_for(user: AbstractBaseUser, slug: str, number: int, *, need: str = VIEW) -> ModelVersion:
    deployment = get_deployment_for(user, slug, need=need)
    version = deployment.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version")
    return version


def get_job_for(user: AbstractBaseUser, job_id: int, *, need: str = VIEW) -> MaintenanceJob:
    job = MaintenanceJob.objects.select_related("deployment").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job")
    _authorise(user, job.deployment, need)
    return job


def get_alert_for(user: AbstractBaseUser, alert_id: int, *, need: str = VIEW) -> Alert:
    alert = Alert.objects.select_related("deployment").filter(pk=alert_id).first()
    if alert is None:
        raise Http404("No such alert")
    _authorise(user, alert.deployment, need)
    return alert


def get_team_for(user: AbstractBaseUser, slug: str, *, need: str = VIEW) -> Team:
    """A team the user belongs to with at least `need` (e.g. to create a deployment in it); 404 for non-members."""
    team = Team.objects.filter(slug=slug).first()
    role = None if team is None else team_role_for(user=user, team_id=team.pk)
    if team is None or role is None:
        raise Http404("No such team")
    if not role_allows(role, need):
        raise PermissionDenied(f"This needs the {Role(need).label.lower()} role on {team}.")
    return team


def can(user: AbstractBaseUser, deployment: Deployment, need: str) -> bool:
    return role_allows(role_for(user=user, deployment=deployment), need)


# Alert delivery: a team's channels, routing rules and silences are read by its viewers and managed by its
# approvers (they decide who is woken up, and a webhook URL is where the team's data goes).
MANAGE_ALERTING = APPROVE


def get_channel_for(user: AbstractBaseUser, team_slug: str, channel_id: int, *, need: str = VIEW) -> NotificationChannel:
    team = get_team_for(user, team_slug, need=need)
    channel = NotificationChannel.objects.filter(team=team, pk=channel_id).select_related("team").first()
    if channel is None:
        raise Http404("No such channel")
    return channel


def get_rule_for(user: AbstractBaseUser, team_slug: str, rule_id: int, *, need: str = VIEW) -> RoutingRule:
    team = get_team_for(user, team_slug, need=need)
    rule = RoutingRule.objects.filter(team=team, pk=rule_id).select_related("team").first()
    if rule is None:
        raise Http404("No such routing rule")
    return rule


def get_silence_for(user: AbstractBaseUser, team_slug: str, silence_id: int, *, need: str = VIEW) -> Silence:
    team = get_team_for(user, team_slug, need=need)
    silence = Silence.objects.filter(team=team, pk=silence_id).select_related("deployment").first()
    if silence is None:
        raise Http404("No such silence")
    return silence


def get_alert_group_for(user: AbstractBaseUser, group_id: int, *, need: str = VIEW) -> AlertGroup:
    group = AlertGroup.objects.select_related("deployment__team", "acknowledged_by").filter(pk=group_id).first()
    if group is None:
        raise Http404("No such alert group")
    _authorise(user, group.deployment, need)
    return group
