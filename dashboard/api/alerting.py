"""Alert delivery in the API: a team's channels, routing rules and silences, and an alert's notifications.
Session auth; viewers of the team read, approvers manage (dashboard/access.py, MANAGE_ALERTING)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status

from dashboard.access import (
    MANAGE_ALERTING,
    VIEW,
    get_alert_for,
    get_channel_for,
    get_rule_for,
    get_silence_for,
    get_team_for,
)
from dashboard.api.auth import management_auth, user_of
from dashboard.api.errors import error_responses
from dashboard.api.pagination import Pages
from monitoring import selectors, services
from monitoring.models import Alert, Deployment, Notification, NotificationChannel, RoutingRule, Silence, Team

router = Router(auth=management_auth, tags=["alerting"])

READ_ERRORS = error_responses(401, 404)
WRITE_ERRORS = error_responses(401, 403, 404, 409, 422)


class ChannelIn(Schema):
    kind: Literal["email", "slack", "webhook", "apprise"]
    name: str = Field(min_length=1, max_length=100)
    target: str = Field(description="Email: addresses, comma-separated. Webhook, Slack: the URL. Apprise: its URL.")


class ChannelOut(Schema):
    id: int
    kind: str
    name: str
    target: str = Field(description="Where it sends; for Slack and Apprise only the host or scheme (the URL is a secret)")
    enabled: bool
    consecutive_failures: int
    disabled_reason: str
    created_at: datetime

    @staticmethod
    def resolve_target(obj: NotificationChannel) -> str:
        return obj.target_display


class ChannelCreatedOut(ChannelOut):
    signing_secret: str | None = Field(description="A webhook's Standard Webhooks secret (whsec_…), shown only here")


class AttemptOut(Schema):
    at: datetime
    outcome: Literal["sent", "transient", "permanent"]
    status_code: int | None
    latency_ms: float
    error: str


class NotificationOut(Schema):
    id: int
    webhook_id: str = Field(description="Stable across retries: the webhook-id header")
    channel: str
    event: Literal["firing", "resolved", "test"]
    status: Literal["pending", "sending", "sent", "failed"]
    attempts: list[AttemptOut]
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime

    @staticmethod
    def resolve_channel(obj: Notification) -> str:
        # A direct email to people (a candidate to the approvers, a job's outcome) has no channel.
        return obj.channel.name if obj.channel is not None else "email to " + ", ".join(obj.recipients)

    @staticmethod
    def resolve_attempts(obj: Notification) -> list[Any]:
        return list(obj.delivery_attempts.all())


class RuleIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    channels: list[int] = Field(description="Ids of the team's channels")
    deployment: str | None = Field(None, description="A deployment's slug; none = every deployment of the team")
    min_severity: Literal["info", "warning", "critical"] = "warning"
    kinds: list[str] = Field(default_factory=list, description="Alert kinds; empty = every kind")
    group_wait_s: int = 30
    group_interval_s: int = 300
    repeat_interval_s: int = 4 * 3600


class RulePatch(Schema):
    """Only the fields given change; the others keep their values."""

    name: str | None = Field(None, min_length=1, max_length=100)
    channels: list[int] | None = Field(None, description="Ids of the team's channels")
    deployment: str | None = Field(None, description="A deployment's slug; \"\" = every deployment of the team")
    min_severity: Literal["info", "warning", "critical"] | None = None
    kinds: list[str] | None = Field(None, description="Alert kinds; empty = every kind")
    group_wait_s: int | None = None
    group_interval_s: int | None = None
    repeat_interval_s: int | None = None


class RuleOut(Schema):
    id: int
    name: str
    deployment: str | None
    min_severity: str
    kinds: list[str]
    channels: list[int]
    group_wait_s: int
    group_interval_s: int
    repeat_interval_s: int

    @staticmethod
    def resolve_deployment(obj: RoutingRule) -> str | None:
        return obj.deployment.slug if obj.deployment else None

    @staticmethod
    def resolve_channels(obj: RoutingRule) -> list[int]:
        return [c.pk for c in obj.channels.all()]


class SilenceIn(Schema):
    ends_at: datetime
    comment: str = Field(min_length=1, max_length=2000)
    deployment: str | None = None
    kind: str = ""
    severity: Literal["", "info", "warning", "critical"] = ""


class SilenceOut(Schema):
    id: int
    deployment: str | None
    kind: str
    severity: str
    starts_at: datetime
    ends_at: datetime
    author: str | None
    comment: str

    @staticmethod
    def resolve_deployment(obj: Silence) -> str | None:
        return obj.deployment.slug if obj.deployment else None

    @staticmethod
    def resolve_author(obj: Silence) -> str | None:
        return obj.author.get_username() if obj.author else None


def _deployment_of(team: Team, slug: str | None) -> Deployment | None:
    if not slug:
        return None
    deployment = Deployment.objects.filter(team=team, slug=slug).first()
    if deployment is None:
        raise services.ValidationFailed(f"The team has no deployment {slug!r}.", errors=[{"field": "deployment", "message": "unknown"}])
    return deployment


@router.get("/teams/{team}/channels", response={200: list[ChannelOut], **READ_ERRORS}, summary="List a team's channels")
@paginate(Pages)
def channel_list(request: HttpRequest, team: str) -> list[NotificationChannel]:
    return list(selectors.channels_for(team=get_team_for(user_of(request), team, need=VIEW)))


@router.post("/teams/{team}/channels", response={201: ChannelCreatedOut, **WRITE_ERRORS}, summary="Add a channel")
def channel_create(request: HttpRequest, team: str, payload: ChannelIn) -> Status:
    """Needs the approver role. A webhook's signing secret is in this response only."""
    team_obj = get_team_for(user_of(request), team, need=MANAGE_ALERTING)
    channel, secret = services.channel_create(
        team=team_obj, kind=payload.kind, name=payload.name, target=payload.target, by=user_of(request)
    )
    channel.signing_secret = secret  # type: ignore[attr-defined]  # for ChannelCreatedOut, never stored in the clear
    return Status(201, channel)


@router.get("/teams/{team}/channels/{channel_id}", response={200: ChannelOut, **READ_ERRORS}, summary="Get a channel")
def channel_detail(request: HttpRequest, team: str, channel_id: int) -> NotificationChannel:
    return get_channel_for(user_of(request), team, channel_id, need=VIEW)


@router.delete("/teams/{team}/channels/{channel_id}", response={204: None, **WRITE_ERRORS}, summary="Delete a channel")
def channel_delete(request: HttpRequest, team: str, channel_id: int) -> Status:
    channel = get_channel_for(user_of(request), team, channel_id, need=MANAGE_ALERTING)
    services.channel_delete(channel=channel, by=user_of(request))
    return Status(204, None)


@router.post("/teams/{team}/channels/{channel_id}/test", response={202: NotificationOut, **WRITE_ERRORS},
             summary="Send a test notification")
def channel_test(request: HttpRequest, team: str, channel_id: int) -> Status:
    channel = get_channel_for(user_of(request), team, channel_id, need=MANAGE_ALERTING)
    return Status(202, services.channel_test(channel=channel, by=user_of(request)))


@router.get("/teams/{team}/channels/{channel_id}/deliveries", response={200: list[NotificationOut], **READ_ERRORS},
            summary="A channel's last deliveries, with every attempt")
@paginate(Pages)
def channel_deliveries(request: HttpRequest, team: str, channel_id: int) -> list[Notification]:
    return selectors.channel_deliveries(channel=get_channel_for(user_of(request), team, channel_id, need=VIEW))


@router.get("/teams/{team}/rules", response={200: list[RuleOut], **READ_ERRORS}, summary="List routing rules")
@paginate(Pages)
def rule_list(request: HttpRequest, team: str) -> list[RoutingRule]:
    return list(selectors.rules_for(team=get_team_for(user_of(request), team, need=VIEW)))


def _channels_of(team: Team, ids: list[int]) -> list[NotificationChannel]:
    channels = list(NotificationChannel.objects.filter(team=team, pk__in=ids))
    if len(channels) != len(set(ids)):
        unknown = sorted(set(ids) - {c.pk for c in channels})
        raise services.ValidationFailed(
            f"Channel(s) {unknown} are not this team's; list them with GET /api/teams/{team.slug}/channels.",
            errors=[{"field": "channels", "message": "unknown"}],
        )
    return channels


@router.post("/teams/{team}/rules", response={201: RuleOut, **WRITE_ERRORS}, summary="Add a routing rule")
def rule_create(request: HttpRequest, team: str, payload: RuleIn) -> Status:
    team_obj = get_team_for(user_of(request), team, need=MANAGE_ALERTING)
    channels = _channels_of(team_obj, payload.channels)
    rule = services.routing_rule_create(
        team=team_obj, name=payload.name, channels=channels, deployment=_deployment_of(team_obj, payload.deployment),
        min_severity=payload.min_severity, kinds=payload.kinds, group_wait_s=payload.group_wait_s,
        group_interval_s=payload.group_interval_s, repeat_interval_s=payload.repeat_interval_s, by=user_of(request),
    )
    return Status(201, rule)


@router.get("/teams/{team}/rules/{rule_id}", response={200: RuleOut, **READ_ERRORS}, summary="A routing rule")
def rule_get(request: HttpRequest, team: str, rule_id: int) -> RoutingRule:
    return get_rule_for(user_of(request), team, rule_id, need=VIEW)


@router.put("/teams/{team}/rules/{rule_id}", response={200: RuleOut, **WRITE_ERRORS},
            summary="Replace a routing rule (audited)")
def rule_replace(request: HttpRequest, team: str, rule_id: int, payload: RuleIn) -> RoutingRule:
    rule = get_rule_for(user_of(request), team, rule_id, need=MANAGE_ALERTING)
    return services.routing_rule_update(
        rule=rule, name=payload.name, channels=_channels_of(rule.team, payload.channels),
        deployment=_deployment_of(rule.team, payload.deployment), min_severity=payload.min_severity,
        kinds=payload.kinds, group_wait_s=payload.group_wait_s, group_interval_s=payload.group_interval_s,
        repeat_interval_s=payload.repeat_interval_s, by=user_of(request),
    )


@router.patch("/teams/{team}/rules/{rule_id}", response={200: RuleOut, **WRITE_ERRORS},
              summary="Change some fields of a routing rule (audited)")
def rule_patch(request: HttpRequest, team: str, rule_id: int, payload: RulePatch) -> RoutingRule:
    rule = get_rule_for(user_of(request), team, rule_id, need=MANAGE_ALERTING)
    given = payload.dict(exclude_unset=True)
    channels = _channels_of(rule.team, given["channels"]) if given.get("channels") is not None else list(rule.channels.all())
    deployment = _deployment_of(rule.team, given["deployment"]) if "deployment" in given else rule.deployment

    def value(name: str) -> Any:
        return given[name] if given.get(name) is not None else getattr(rule, name)

    return services.routing_rule_update(
        rule=rule, name=value("name"), channels=channels, deployment=deployment, min_severity=value("min_severity"),
        kinds=value("kinds"), group_wait_s=value("group_wait_s"), group_interval_s=value("group_interval_s"),
        repeat_interval_s=value("repeat_interval_s"), by=user_of(request),
    )


@router.delete("/teams/{team}/rules/{rule_id}", response={204: None, **WRITE_ERRORS}, summary="Delete a routing rule")
def rule_delete(request: HttpRequest, team: str, rule_id: int) -> Status:
    services.routing_rule_delete(rule=get_rule_for(user_of(request), team, rule_id, need=MANAGE_ALERTING), by=user_of(request))
    return Status(204, None)


@router.get("/teams/{team}/silences", response={200: list[SilenceOut], **READ_ERRORS}, summary="List active silences")
@paginate(Pages)
def silence_list(request: HttpRequest, team: str) -> list[Silence]:
    return list(selectors.silences_for_team(team=get_team_for(user_of(request), team, need=VIEW)))


@router.post("/teams/{team}/silences", response={201: SilenceOut, **WRITE_ERRORS}, summary="Add a silence")
def silence_create(request: HttpRequest, team: str, payload: SilenceIn) -> Status:
    team_obj = get_team_for(user_of(request), team, need=MANAGE_ALERTING)
    silence = services.silence_create(
        team=team_obj, ends_at=payload.ends_at, comment=payload.comment,
        deployment=_deployment_of(team_obj, payload.deployment), kind=payload.kind, severity=payload.severity,
        by=user_of(request),
    )
    return Status(201, silence)


@router.delete("/teams/{team}/silences/{silence_id}", response={200: SilenceOut, **WRITE_ERRORS},
               summary="End a silence now")
def silence_expire(request: HttpRequest, team: str, silence_id: int) -> Silence:
    silence = get_silence_for(user_of(request), team, silence_id, need=MANAGE_ALERTING)
    return services.silence_expire(silence=silence, by=user_of(request))


@router.get("/alerts/{alert_id}/notifications", response={200: list[NotificationOut], **READ_ERRORS},
            summary="The notifications that listed an alert, with their attempts")
@paginate(Pages)
def alert_notifications(request: HttpRequest, alert_id: int) -> list[Notification]:
    alert: Alert = get_alert_for(user_of(request), alert_id, need=VIEW)
    return selectors.alert_notifications(alert=alert)
