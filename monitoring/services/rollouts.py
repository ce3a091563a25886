"""Progressive rollout (issue 14): start a candidate on a share of the fleet, move it through its plan's stages,
pause, resume, abort. Every transition is claimed by a conditional update on (state, stage), so two workers (or a
worker and an approver) never both move a rollout; each is audited and tells the fleet (serving_changed)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring.models import Alert, Deployment, ModelVersion, Rollout, RolloutCheck, RolloutPlan
from monitoring.rollout.guards import GuardConfig, GuardResult
from monitoring.rollout_models import DEFAULT_STAGES
from monitoring.services.alerts import alert_raise, candidate_decided
from monitoring.services.audit import audit_record
from monitoring.services.errors import Conflict, ValidationFailed
from monitoring.services.events import event_emit
from monitoring.services.serving import serving_changed
from monitoring.services.versions import (
    _check_second_approver,
    _decide,
    _locked_version,
    _require_reason,
    _retire,
    _serve,
    deployment_rollback,
    version_approve,
    version_event_data,
)

LIVE = (Rollout.State.RUNNING, Rollout.State.PAUSED)
MAX_STAGES = 10
MIN_GUARD_ROWS = 30  # below this a chi-square or KS verdict is noise, whatever alpha says
MAX_WATCH_MINUTES = 7 * 24 * 60


def rollout_stages_validate(stages: object) -> list[dict]:
    """A plan's stages, normalised; ValidationFailed saying what to fix. Shares grow and the last is 1.0."""
    def refuse(message: str) -> ValidationFailed:
        return ValidationFailed(message, errors=[{"field": "stages", "message": message}])

    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES:
        raise refuse(f"stages must be a list of 1 to {MAX_STAGES} stages like "
                     '{"share": 0.1, "min_minutes": 30, "min_predictions": 500}.')
    clean, previous = [], 0.0
    for i, stage in enumerate(stages, start=1):
        if not isinstance(stage, dict) or "share" not in stage:
            raise refuse(f"stage {i} needs a share (0 < share <= 1).")
        try:
            share = float(stage["share"])
            minutes = int(stage.get("min_minutes", 0))
            predictions = int(stage.get("min_predictions", 0))
        except (TypeError, ValueError):
            raise refuse(f"stage {i}: share is a number, min_minutes and min_predictions whole numbers.") from None
        if not 0 < share <= 1 or share <= previous:
            raise refuse(f"stage {i}: each share must be above the previous one and at most 1 (got {share:g}).")
        if minutes < 0 or predictions < 0:
            raise refuse(f"stage {i}: min_minutes and min_predictions cannot be negative.")
        clean.append({"share": share, "min_minutes": minutes, "min_predictions": predictions})
        previous = share
    if clean[-1]["share"] != 1.0:
        raise refuse("the last stage must serve everyone (share 1.0); it makes the candidate active.")
    return clean


def _guards_validate(guards: object) -> dict:
    if not isinstance(guards, dict):
        raise ValidationFailed("guards must be an object like {\"class_shift\": {\"threshold\": 0.1}}.")
    try:
        GuardConfig.from_dict(guards)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(str(exc), errors=[{"field": "guards", "message": str(exc)}]) from None
    for name, values in guards.items():
        problem = _guard_setting_problem(values)
        if problem:
            message = f"guard {name}: {problem}"
            raise ValidationFailed(message, errors=[{"field": "guards", "message": message}])
    return guards


def _guard_setting_problem(values: dict) -> str:
    threshold, min_rows, alpha = (values.get(key) for key in ("threshold", "min_rows", "alpha"))
    if threshold is not None and not (isinstance(threshold, int | float) and threshold > 0):
        return f"the threshold must be a number above 0 (got {threshold!r})."
    # Ten rows of noise must never decide (docs/rollout.md): a guard needs a sample before it may breach.
    if min_rows is not None and not (isinstance(min_rows, int | float) and float(min_rows).is_integer()
                                     and MIN_GUARD_ROWS <= min_rows <= 1_000_000):
        return f"the minimum rows must be a whole number from {MIN_GUARD_ROWS} to 1,000,000 (got {min_rows!r})."
    if alpha is not None and not (isinstance(alpha, int | float) and 0 < alpha <= 0.1):
        return f"alpha (the significance level) must be above 0 and at most 0.1, e.g. 0.01 (got {alpha!r})."
    return ""


def _watch_minutes_validate(minutes: object) -> int:
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= MAX_WATCH_MINUTES:
        message = (f"The watch period is a whole number of minutes from 0 (no watch) to {MAX_WATCH_MINUTES:,} "
                   f"(a week); got {minutes!r}.")
        raise ValidationFailed(message, errors=[{"field": "watch_minutes", "message": message}])
    return minutes


def rollout_plan_of(deployment: Deployment) -> RolloutPlan:
    """The deployment's plan, or the default one (unsaved) when none was set."""
    plan = RolloutPlan.objects.filter(deployment=deployment).first()
    return plan or RolloutPlan(deployment=deployment, stages=[dict(s) for s in DEFAULT_STAGES])


@transaction.atomic
def rollout_plan_set(
    *, deployment: Deployment, by: AbstractBaseUser, stages: list, guards: dict | None = None,
    watch_minutes: int = 60, auto_rollback: bool = False,
) -> RolloutPlan:
    clean = rollout_stages_validate(stages)
    guards = _guards_validate(guards or {})
    watch_minutes = _watch_minutes_validate(watch_minutes)
    previous = RolloutPlan.objects.filter(deployment=deployment).values("stages", "guards", "watch_minutes", "auto_rollback").first()
    before = dict(previous) if previous is not None else None
    plan, _ = RolloutPlan.objects.update_or_create(
        deployment=deployment,
        defaults={"stages": clean, "guards": guards, "watch_minutes": watch_minutes, "auto_rollback": auto_rollback,
                  "updated_by": by, "updated_at": timezone.now()},
    )
    audit_record(action="rollout_plan.set", actor=by, deployment=deployment, obj=plan, before=before,
                 after={"stages": clean, "guards": guards, "watch_minutes": watch_minutes, "auto_rollback": auto_rollback})
    return plan


def _emit(rollout: Rollout, event: str, by: AbstractBaseUser | None, **extra) -> None:
    """A CD event (monitoring/services/events.py) describing the rollout as it is now."""
    event_emit(deployment=rollout.deployment, event=event, data={
        "rollout": rollout.pk, "candidate": rollout.candidate.number, "active_version": rollout.baseline.number
        if rollout.state != Rollout.State.COMPLETED else rollout.candidate.number,
        "state": rollout.state, "stage": rollout.stage + 1, "stages": len(rollout.stages), "share": rollout.share,
        "by": by.get_username() if by else "worker", "outcome": rollout.outcome,
    } | extra)


def _state(rollout: Rollout) -> dict:
    return {"state": rollout.state, "stage": rollout.stage, "share": rollout.share,
            "candidate": rollout.candidate.number, "baseline": rollout.baseline.number}


@transaction.atomic
def rollout_start(
    *, version: ModelVersion, by: AbstractBaseUser, stages: list | None = None, comment: str = ""
) -> Rollout:
    """Approve a candidate into a rollout: its first stage's share of the fleet serves it from now.

    A plan of one stage (share 1.0) is "promote now": the candidate becomes active at once and the rollout is
    recorded as completed. The four-eyes rule of version_approve applies."""
    comment = _require_reason(comment, doing=f"roll out v{version.number}")
    version = _locked_version(version)
    deployment = version.deployment
    if version.status != ModelVersion.Status.CANDIDATE:
        raise Conflict(f"v{version.number} is {version.status}; only a candidate can be rolled out.")
    _check_second_approver(version, by)
    plan = rollout_plan_of(deployment)
    clean = rollout_stages_validate(stages if stages is not None else plan.stages)
    baseline = deployment.active_version()
    if baseline is None:
        raise Conflict(f"{deployment.name} has no active version; approve the candidate directly.")
    live = Rollout.objects.filter(deployment=deployment, state__in=LIVE).select_related("candidate").first()
    if live is not None:
        raise Conflict(f"v{live.candidate.number} is already rolling out; abort or finish it first.")
    now = timezone.now()
    if len(clean) == 1:
        version_approve(version=version, by=by, comment=comment)
        rollout = Rollout.objects.create(
            deployment=deployment, candidate=version, baseline=baseline, stages=clean, guards=plan.guards,
            state=Rollout.State.COMPLETED, started_at=now, stage_started_at=now, started_by=by, ended_at=now,
            ended_by=by, outcome="promoted at once (a plan of one stage)",
        )
        audit_record(action="rollout.complete", actor=by, deployment=deployment, obj=rollout, after=_state(rollout),
                     comment=comment)
        return rollout
    try:
        with transaction.atomic():
            rollout = Rollout.objects.create(
                deployment=deployment, candidate=version, baseline=baseline, stages=clean, guards=plan.guards,
                started_at=now, stage_started_at=now, started_by=by,
            )
    except IntegrityError:  # rollout_one_live_per_deployment: another approver started one a moment ago
        raise Conflict("A rollout started on this deployment a moment ago; reload to see it.") from None
    _decide(version, by=by, comment=comment)  # the approval is now; activation comes at the last stage
    version.save(update_fields=["decided_by", "decided_at", "decision_comment"])
    candidate_decided(version=version)  # it no longer waits for review: its "waiting" alert resolves
    serving_changed(deployment_id=deployment.pk)
    audit_record(action="rollout.start", actor=by, deployment=deployment, obj=rollout, after=_state(rollout),
                 comment=comment)
    event_emit(deployment=deployment, event="version.approved",
               data=version_event_data(version) | {"by": by.get_username(), "rollout": rollout.pk})
    _emit(rollout, "rollout.started", by)
    return rollout


def _claim(rollout: Rollout, *, states: tuple[str, ...], **changes) -> bool:
    """Move the rollout only if it is still in one of `states`: the conditional update that makes concurrent
    transitions safe (a concurrent one waits on the row lock, then finds the row moved and updates nothing)."""
    return Rollout.objects.filter(pk=rollout.pk, state__in=states).update(**changes) == 1


def _fresh(rollout: Rollout) -> Rollout:
    return Rollout.objects.select_related("deployment", "candidate", "baseline").get(pk=rollout.pk)


@transaction.atomic
def rollout_advance(
    *, rollout: Rollout, from_stage: int, by: AbstractBaseUser | None, reason: str = ""
) -> Rollout:
    """The next stage, or completion when the next is the last (share 1.0: the candidate becomes active). Raises Conflict if the rollout has moved on since
    `from_stage` was read: then someone else's transition won."""
    rollout = _fresh(rollout)
    if from_stage + 2 >= len(rollout.stages):  # the last stage serves everyone: reaching it is completion
        return _complete(rollout, from_stage=from_stage, by=by, reason=reason)
    now = timezone.now()
    if not Rollout.objects.filter(pk=rollout.pk, state__in=LIVE, stage=from_stage).update(
        stage=from_stage + 1, stage_started_at=now
    ):
        raise Conflict(f"The rollout of v{rollout.candidate.number} is no longer at stage {from_stage + 1}; reload.")
    before = _state(rollout)
    rollout = _fresh(rollout)
    serving_changed(deployment_id=rollout.deployment_id)
    audit_record(action="rollout.advance", actor=by, actor_label="" if by else "worker", deployment=rollout.deployment,
                 obj=rollout, before=before, after=_state(rollout), comment=reason)
    _emit(rollout, "rollout.advanced", by, reason=reason)
    return rollout


def _complete(rollout: Rollout, *, from_stage: int, by: AbstractBaseUser | None, reason: str) -> Rollout:
    now = timezone.now()
    plan = rollout_plan_of(rollout.deployment)
    watch_until = now + timedelta(minutes=plan.watch_minutes) if plan.watch_minutes else None
    if not Rollout.objects.filter(pk=rollout.pk, state__in=LIVE, stage=from_stage).update(
        state=Rollout.State.COMPLETED, ended_at=now, ended_by=by, outcome="completed", watch_until=watch_until,
    ):
        raise Conflict(f"The rollout of v{rollout.candidate.number} is no longer at stage {from_stage + 1}; reload.")
    before = _state(rollout)
    candidate, baseline = rollout.candidate, rollout.deployment.active_version()
    if baseline is not None:
        _retire(baseline, by=by, reason=f"replaced by v{candidate.number} (rollout completed)", at=now)
    candidate.status = ModelVersion.Status.ACTIVE
    candidate.activated_at = now
    candidate.save(update_fields=["status", "activated_at"])
    _serve(candidate, at=now)
    serving_changed(deployment_id=rollout.deployment_id)
    rollout = _fresh(rollout)
    audit_record(action="rollout.complete", actor=by, actor_label="" if by else "worker", deployment=rollout.deployment,
                 obj=rollout, before=before, after=_state(rollout) | {"active_version": candidate.number}, comment=reason)
    _emit(rollout, "rollout.completed", by, reason=reason)
    return rollout


@transaction.atomic
def rollout_pause(*, rollout: Rollout, by: AbstractBaseUser, comment: str = "") -> Rollout:
    """Hold the current stage: its share keeps the candidate, the guards keep watching (a breach still aborts),
    but nothing advances until it is resumed."""
    rollout = _fresh(rollout)
    if not _claim(rollout, states=(Rollout.State.RUNNING,), state=Rollout.State.PAUSED):
        raise Conflict(f"The rollout of v{rollout.candidate.number} is {rollout.state}; only a running one can pause.")
    rollout = _audited(rollout, "rollout.pause", by, comment)
    _emit(rollout, "rollout.paused", by, reason=comment)
    return rollout


@transaction.atomic
def rollout_resume(*, rollout: Rollout, by: AbstractBaseUser, comment: str = "") -> Rollout:
    rollout = _fresh(rollout)
    if not _claim(rollout, states=(Rollout.State.PAUSED,), state=Rollout.State.RUNNING):
        raise Conflict(f"The rollout of v{rollout.candidate.number} is {rollout.state}; only a paused one can resume.")
    rollout = _audited(rollout, "rollout.resume", by, comment)
    _emit(rollout, "rollout.resumed", by, reason=comment)
    return rollout


def _audited(rollout: Rollout, action: str, by: AbstractBaseUser | None, comment: str) -> Rollout:
    before = _state(rollout)
    rollout = _fresh(rollout)
    audit_record(action=action, actor=by, actor_label="" if by else "worker", deployment=rollout.deployment,
                 obj=rollout, before=before, after=_state(rollout), comment=comment)
    return rollout


@transaction.atomic
def rollout_abort(
    *, rollout: Rollout, by: AbstractBaseUser | None, reason: str = "", breached: list[GuardResult] | None = None
) -> Rollout:
    """Every instance back on the active version; the candidate is rejected, marked rolled back (by a guard when
    `breached`, with an alert naming the guards and their figures)."""
    rollout = _fresh(rollout)
    now = timezone.now()
    if breached:
        outcome = "rolled back by guard " + "; ".join(result.describe() for result in breached)
    else:
        outcome = f"aborted by {by.get_username() if by else 'the system'}" + (f": {reason}" if reason else "")
    if not _claim(rollout, states=LIVE, state=Rollout.State.ABORTED, ended_at=now, ended_by=by, outcome=outcome):
        raise Conflict(f"The rollout of v{rollout.candidate.number} is {rollout.state}; there is nothing to abort.")
    candidate = rollout.candidate
    ModelVersion.objects.filter(pk=candidate.pk, status=ModelVersion.Status.CANDIDATE).update(
        status=ModelVersion.Status.REJECTED, retired_at=now, retired_by=by, retired_reason=outcome,
    )
    serving_changed(deployment_id=rollout.deployment_id)
    result = _audited(rollout, "rollout.abort", by, outcome)
    guards = [r.as_dict() for r in breached or []]
    _emit(result, "rollout.aborted", by, guards=guards)
    event_emit(deployment=result.deployment, event="version.rolled_back", data={
        "version": candidate.number, "active_version": result.baseline.number, "rollout": result.pk,
        "by": by.get_username() if by else "worker", "reason": outcome, "guard": guards[0]["guard"] if guards else None,
    })
    if breached:
        _alert_breach(result, breached, stage=rollout.stage)
    return result


def _alert_breach(rollout: Rollout, breached: list[GuardResult], *, stage: int) -> None:
    names = ", ".join(result.guard for result in breached)
    alert_raise(
        deployment=rollout.deployment, kind=Alert.Kind.ROLLOUT_GUARD, severity=Alert.Severity.CRITICAL,
        dedup_key=f"rollout:{rollout.pk}",
        title=f"v{rollout.candidate.number} rolled back by guard ({names}) at stage {stage + 1}",
        message="\n".join(result.describe() for result in breached)
        + f"\nEvery instance is back on v{rollout.baseline.number}.",
        figures={"rollout": rollout.pk, "candidate": rollout.candidate.number, "stage": stage + 1,
                 "guards": [result.as_dict() for result in breached]},
    )


def rollout_checks_record(*, rollout: Rollout, results: list[GuardResult], at: datetime) -> list[RolloutCheck]:
    checks = RolloutCheck.objects.bulk_create([
        RolloutCheck(rollout=rollout, stage=rollout.stage, at=at, guard=r.guard, verdict=r.verdict, value=r.value,
                     threshold=r.threshold, p_value=r.p_value, n_candidate=r.n_candidate, n_active=r.n_active,
                     figures=r.figures | {"test": r.test})
        for r in results
    ])
    Rollout.objects.filter(pk=rollout.pk).update(last_checked_at=at)
    return checks


@transaction.atomic
def rollout_watch_breach(*, rollout: Rollout, breached: list[GuardResult]) -> str:
    """A guard breached in the watch period after completion: roll back to the previous version if the deployment
    opted in (its plan's auto_rollback), else raise a critical alert. Claimed by clearing watch_until, so it acts
    once. Returns "rolled_back", "alerted" or "" (already handled, or the promoted version no longer serves)."""
    if not Rollout.objects.filter(pk=rollout.pk, watch_until__isnull=False).update(watch_until=None):
        return ""
    rollout = _fresh(rollout)
    deployment = rollout.deployment
    figures = "; ".join(result.describe() for result in breached)
    if deployment.active_version() != rollout.candidate:
        return ""
    if rollout_plan_of(deployment).auto_rollback:
        deployment_rollback(deployment=deployment, by=None, comment=f"rolled back by guard after promotion: {figures}")
        Rollout.objects.filter(pk=rollout.pk).update(outcome=f"completed, then rolled back by guard: {figures}")
        outcome = "rolled_back"
    else:
        outcome = "alerted"
    alert_raise(
        deployment=deployment, kind=Alert.Kind.ROLLOUT_GUARD, severity=Alert.Severity.CRITICAL,
        dedup_key=f"rollout-watch:{rollout.pk}",
        title=(f"v{rollout.candidate.number} rolled back by guard after promotion" if outcome == "rolled_back" else
               f"v{rollout.candidate.number} breached a guard after promotion: roll back?"),
        message=figures + ("" if outcome == "rolled_back" else
                           "\nThe deployment does not roll back by itself (its rollout plan's auto_rollback is off)."),
        figures={"rollout": rollout.pk, "candidate": rollout.candidate.number,
                 "guards": [result.as_dict() for result in breached]},
    )
    return outcome
