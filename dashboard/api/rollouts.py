"""Progressive rollout (docs/rollout.md): a deployment's plan, starting a candidate's rollout, and the approver's
controls (pause, resume, advance now, abort). Session auth; every write needs the approver role."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status
from pydantic import Field

from dashboard.access import APPROVE, VIEW, get_channel_for, get_deployment_for, get_version_for
from dashboard.api.auth import management_auth, user_of
from dashboard.api.errors import error_responses
from dashboard.api.pagination import Pages
from monitoring import selectors, services
from monitoring.models import Rollout

router = Router(auth=management_auth, tags=["rollouts"])
CONTROL_ERRORS = error_responses(401, 403, 404, 409, 422)


class StageIn(Schema):
    share: float = Field(..., gt=0, le=1, description="Share of instances on the candidate, 0 < share <= 1")
    min_minutes: int = Field(0, ge=0, description="The stage lasts at least this long")
    min_predictions: int = Field(0, ge=0, description="…and until the candidate has made this many predictions")


class PlanIn(Schema):
    stages: list[StageIn] = Field(..., description="Growing shares; the last is 1.0 (the candidate becomes active)")
    guards: dict[str, dict[str, float]] = Field(
        default_factory=dict, description='Over the defaults, e.g. {"class_shift": {"threshold": 0.1, "min_rows": 200}}')
    watch_minutes: int = Field(60, ge=0, description="After completion the guards keep watching this long")
    auto_rollback: bool = Field(False, description="A breach in the watch period rolls back (else a critical alert)")


class PlanOut(Schema):
    stages: list[dict]
    guards: dict
    watch_minutes: int
    auto_rollback: bool


class RolloutStartIn(Schema):
    stages: list[StageIn] | None = Field(None, description="Override the deployment's plan for this rollout")
    comment: str = Field("", max_length=5000)


class ControlIn(Schema):
    comment: str = Field("", max_length=5000, description="Why; kept in the audit log")


class RolloutOut(Schema):
    id: int
    candidate: int
    baseline: int
    state: str
    stage: int = Field(description="1-based: the stage it is in")
    stages: list[dict]
    share: float
    started_at: datetime
    stage_started_at: datetime
    ended_at: datetime | None
    outcome: str

    @staticmethod
    def of(rollout: Rollout) -> RolloutOut:
        return RolloutOut(
            id=rollout.pk, candidate=rollout.candidate.number, baseline=rollout.baseline.number, state=rollout.state,
            stage=rollout.stage + 1, stages=rollout.stages, share=rollout.share, started_at=rollout.started_at,
            stage_started_at=rollout.stage_started_at, ended_at=rollout.ended_at, outcome=rollout.outcome,
        )


def _plan_out(plan) -> PlanOut:
    return PlanOut(stages=plan.stages, guards=plan.guards, watch_minutes=plan.watch_minutes,
                   auto_rollback=plan.auto_rollback)


@router.get("/deployments/{slug}/rollout-plan", response={200: PlanOut, **error_responses(401, 404)},
            summary="The deployment's default rollout plan")
def plan_get(request: HttpRequest, slug: str) -> PlanOut:
    deployment = get_deployment_for(user_of(request), slug, need=VIEW)
    return _plan_out(services.rollout_plan_of(deployment))


@router.put("/deployments/{slug}/rollout-plan", response={200: PlanOut, **CONTROL_ERRORS},
            summary="Set the deployment's default rollout plan")
def plan_set(request: HttpRequest, slug: str, payload: PlanIn) -> PlanOut:
    """Needs the approver role. Audited."""
    deployment = get_deployment_for(user_of(request), slug, need=APPROVE)
    plan = services.rollout_plan_set(
        deployment=deployment, by=user_of(request), stages=[s.model_dump() for s in payload.stages],
        guards=payload.guards, watch_minutes=payload.watch_minutes, auto_rollback=payload.auto_rollback,
    )
    return _plan_out(plan)


@router.get("/deployments/{slug}/rollouts", response={200: list[RolloutOut], **error_responses(401, 404, 422)},
            summary="The live rollout (first, if any) and past ones")
@paginate(Pages)
def rollout_list(request: HttpRequest, slug: str) -> list[RolloutOut]:
    deployment = get_deployment_for(user_of(request), slug, need=VIEW)
    live = selectors.rollout_live_for(deployment=deployment)
    return [RolloutOut.of(r) for r in ([live] if live else []) + selectors.rollout_history(deployment=deployment)]


@router.post("/deployments/{slug}/versions/{number}/rollout", response={201: RolloutOut, **CONTROL_ERRORS},
             summary="Approve a candidate into a progressive rollout")
def rollout_start(request: HttpRequest, slug: str, number: int, payload: RolloutStartIn) -> Status:
    """Needs the approver role (and, with require_distinct_approver, not the candidate's uploader: 403). The
    first stage's share of instances serves the candidate at once; the guards decide the rest. A plan of one
    stage promotes at once. 409 while another rollout is live."""
    version = get_version_for(user_of(request), slug, number, need=APPROVE)
    stages = [s.model_dump() for s in payload.stages] if payload.stages is not None else None
    rollout = services.rollout_start(version=version, by=user_of(request), stages=stages, comment=payload.comment)
    return Status(201, RolloutOut.of(rollout))


def _live(request: HttpRequest, slug: str) -> Rollout:
    deployment = get_deployment_for(user_of(request), slug, need=APPROVE)
    rollout = selectors.rollout_live_for(deployment=deployment)
    if rollout is None:
        raise services.Conflict(f"{deployment.name} has no rollout running; start one from a candidate version.")
    return rollout


@router.post("/deployments/{slug}/rollout/pause", response={200: RolloutOut, **CONTROL_ERRORS},
             summary="Pause the live rollout")
def rollout_pause(request: HttpRequest, slug: str, payload: ControlIn) -> RolloutOut:
    """Needs the approver role. The stage's share keeps the candidate; a guard breach still aborts."""
    rollout = services.rollout_pause(rollout=_live(request, slug), by=user_of(request), comment=payload.comment)
    return RolloutOut.of(rollout)


@router.post("/deployments/{slug}/rollout/resume", response={200: RolloutOut, **CONTROL_ERRORS},
             summary="Resume a paused rollout")
def rollout_resume(request: HttpRequest, slug: str, payload: ControlIn) -> RolloutOut:
    rollout = services.rollout_resume(rollout=_live(request, slug), by=user_of(request), comment=payload.comment)
    return RolloutOut.of(rollout)


@router.post("/deployments/{slug}/rollout/advance", response={200: RolloutOut, **CONTROL_ERRORS},
             summary="Advance the live rollout to its next stage now")
def rollout_advance(request: HttpRequest, slug: str, payload: ControlIn) -> RolloutOut:
    """Needs the approver role. Skips the rest of the current stage; from the last stage but one the candidate
    becomes active. 409 if the rollout moved meanwhile (reload and decide again)."""
    rollout = _live(request, slug)
    moved = services.rollout_advance(rollout=rollout, from_stage=rollout.stage, by=user_of(request),
                                     reason=payload.comment or "advanced by hand")
    return RolloutOut.of(moved)


@router.post("/deployments/{slug}/rollout/abort", response={200: RolloutOut, **CONTROL_ERRORS},
             summary="Abort the live rollout")
def rollout_abort(request: HttpRequest, slug: str, payload: ControlIn) -> RolloutOut:
    """Needs the approver role. Every instance goes back to the active version; the candidate is rejected."""
    rollout = services.rollout_abort(rollout=_live(request, slug), by=user_of(request), reason=payload.comment)
    return RolloutOut.of(rollout)


class EventsIn(Schema):
    events: list[str] = Field(..., description="Event types to send to this webhook channel, e.g. rollout.completed")


class EventsOut(Schema):
    channel: int
    events: list[str]


@router.put("/teams/{team}/channels/{channel_id}/events", response={200: EventsOut, **CONTROL_ERRORS},
            tags=["events"], summary="Subscribe a webhook channel to CD events")
def channel_events_set(request: HttpRequest, team: str, channel_id: int, payload: EventsIn) -> EventsOut:
    """Needs the approver role on the team. The types: version.registered, version.approved, version.rolled_back,
    rollout.started/advanced/paused/resumed/aborted/completed; payloads in docs/rollout.md. Signed like alerts
    (Standard Webhooks)."""
    channel = get_channel_for(user_of(request), team, channel_id, need=APPROVE)
    channel = services.channel_events_set(channel=channel, events=payload.events, by=user_of(request))
    return EventsOut(channel=channel.pk, events=channel.config["events"])
