"""Celery tasks: thin. Each takes ids, re-fetches, and calls into workers/ or monitoring.services.

Enqueue after commit (`transaction.on_commit(lambda: task.delay(pk))`) so a task never runs before its rows exist.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import redis
from celery import Task, shared_task
from celery.exceptions import TimeLimitExceeded
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError

from monitoring import background, indexing, selectors, services
from monitoring.models import Deployment, ModelVersion

# The work itself (workers.drift_check, .evaluation, .jobs) is imported inside each task: it pulls in
# scikit-learn, skl2onnx and the compression methods, 1.4 s that a web process enqueuing a task must not pay.

logger = logging.getLogger(__name__)

# Only errors that go away by themselves are retried: the database or Redis was briefly out of reach.
TRANSIENT_ERRORS = (OperationalError, RedisConnectionError, BrokerOperationalError)
RETRY_POLICY = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 5,  # 5 s, 10 s, 20 s … with jitter
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}
# Per-deployment checks finish in seconds; the hard limit ends a stuck one.
CHECK_TIME_LIMIT = 600
# A deployment lock lives this long and is renewed every third of it while its holder works, so a worker killed
# mid-check (OOM, SIGKILL, a lost machine) frees the deployment within LOCK_TTL_SECONDS, not CHECK_TIME_LIMIT.
LOCK_TTL_SECONDS = 20
# A check whose worker process died is sent again (retry_on_worker_lost) after the dead worker's lock has run out;
# at most RETRY_POLICY's max_retries times, so a check that kills its worker every time (a model too big for the
# memory) stops being retried.
WORKER_LOST_POLICY = {"acks_late": True, "retry_on_worker_lost": True, "default_retry_delay": LOCK_TTL_SECONDS + 2}


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@contextmanager
def deployment_lock(name: str, deployment_id: int, *, ttl: int = LOCK_TTL_SECONDS) -> Iterator[bool]:
    """Yield True if this process may work on the deployment now, False if another worker already is.

    Two workers evaluating one deployment at once would only duplicate runs and alerts, so the loser skips.
    The lock is renewed from a thread while the work runs; a holder that died stops renewing it.
    In-process tasks (the embedded mode, no Redis) run one at a time anyway and take no lock.
    """
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield True
        return
    # thread_local=False: the renewing thread must see the token the acquiring one got.
    lock = _redis().lock(f"watchkeeper:lock:{name}:{deployment_id}", timeout=ttl, blocking=False, thread_local=False)
    if not lock.acquire():
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(ttl / 3):
            try:
                lock.reacquire()
            except (LockError, RedisConnectionError) as exc:  # Redis away, or the lock lost: the work goes on
                logger.warning("could not renew the %s lock of deployment %s: %s", name, deployment_id, exc)

    renewer = threading.Thread(target=renew, name=f"lock-{name}-{deployment_id}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join()
        try:
            lock.release()
        except LockError:  # it expired (Redis was away while renewing), and nobody else holds it now
            pass


@dataclass
class CheckOutcome:
    error: str | None = None


@contextmanager
def scheduled_check(deployment: Deployment, check: str) -> Iterator[CheckOutcome]:
    """Count the outcome of a deployment's scheduled check (services.scheduled_check_record): an exception, or an
    error the body sets, is a failure. Transient errors (the database, the broker) are not the check's fault:
    the task retries them, and they are not counted."""
    outcome = CheckOutcome()
    try:
        yield outcome
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        services.scheduled_check_record(deployment=deployment, check=check, error=f"{type(exc).__name__}: {exc}")
        raise
    services.scheduled_check_record(deployment=deployment, check=check, error=outcome.error)


class MaintenanceJobTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # Reached also when the hard time limit kills the worker child, where run_job had no chance to record it.
        job_id = args[0] if args else kwargs.get("job_id")
        if job_id is None:
            return
        if isinstance(exc, TimeLimitExceeded):
            error = f"The job ran past its time limit ({self.time_limit} s) and was stopped."
        else:
            error = f"The job stopped: {type(exc).__name__}: {exc}"
        services.job_fail(job_id=job_id, error=error)


@shared_task(
    base=MaintenanceJobTask,
    acks_late=True,  # safe: run_job claims the job with a conditional update, so a redelivery does nothing
    soft_time_limit=3000,
    time_limit=3600,
    **RETRY_POLICY,
)
def run_maintenance_job_task(job_id: int) -> None:
    from workers.jobs import run_job

    run_job(job_id)


@shared_task(bind=True, soft_time_limit=CHECK_TIME_LIMIT - 60, time_limit=CHECK_TIME_LIMIT, **WORKER_LOST_POLICY,
             **RETRY_POLICY)
def evaluate_deployment_task(self: Task, deployment_id: int) -> None:
    """acks_late and retried when its worker dies: a killed evaluation left at most a "running" run row (closed
    here on the retry) and no metric points (they are written in one transaction), so running it again gives
    one evaluation."""
    from workers.evaluation import evaluate_deployment

    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None:
        return
    with deployment_lock("evaluate", deployment_id) as acquired:
        if not acquired:
            logger.info("evaluation of %s skipped: another worker is evaluating it", deployment.slug)
            return
        if self.request.retries:
            abandoned = services.evaluation_runs_abandon(deployment=deployment)
            if abandoned:
                logger.warning("evaluation of %s: closed %d run(s) an earlier attempt left running", deployment.slug,
                               abandoned)
        with scheduled_check(deployment, "evaluation") as outcome:
            runs = evaluate_deployment(deployment=deployment)
            outcome.error = "; ".join(f"{run.get_source_display()}: {run.error}" for run in runs if run.error) or None


@shared_task(soft_time_limit=CHECK_TIME_LIMIT - 60, time_limit=CHECK_TIME_LIMIT, **WORKER_LOST_POLICY, **RETRY_POLICY)
def check_drift_task(deployment_id: int) -> None:
    """acks_late and retried when its worker dies: a drift check writes its report in one go at the end, so a
    killed one left nothing and running it again gives one report."""
    from workers.drift_check import check_drift

    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None:
        return
    with deployment_lock("drift", deployment_id) as acquired:
        if not acquired:
            logger.info("drift check of %s skipped: another worker is checking it", deployment.slug)
            return
        with scheduled_check(deployment, "drift"):
            check_drift(deployment=deployment)


@shared_task(soft_time_limit=CHECK_TIME_LIMIT - 60, time_limit=CHECK_TIME_LIMIT, **RETRY_POLICY)
def build_reference_profile_task(deployment_id: int) -> None:
    """A dataset just became the reference: profile it now, so the next drift check does not pay for it.
    Idempotent (the profile is keyed by dataset and model), so a redelivery only finds it built."""
    from workers.drift_check import reference_profile

    deployment = Deployment.objects.filter(pk=deployment_id).select_related("reference_dataset").first()
    if deployment is None or deployment.reference_dataset is None:
        return
    reference_profile(deployment, deployment.active_version())


class ComparisonTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # Reached also when the hard time limit kills the worker child, where comparison_compute could not record it.
        result_id = args[0] if args else kwargs.get("result_id")
        if result_id is not None and isinstance(exc, TimeLimitExceeded):
            services.comparison_fail(
                result_id=result_id, error=f"The comparison ran past its time limit ({self.time_limit} s) and was stopped."
            )


# Two models over a million-row window and a table bootstrap take seconds; ten minutes ends a stuck one
# (services.COMPARISON_LOST_AFTER is longer, so the page never queues again a comparison still running).
@shared_task(base=ComparisonTask, soft_time_limit=CHECK_TIME_LIMIT - 60, time_limit=CHECK_TIME_LIMIT, **RETRY_POLICY)
def compare_versions_task(result_id: int) -> None:
    """The approval page's statistics for one stored comparison row (claimed queued -> running: a redelivery
    does nothing)."""
    from workers.comparison import comparison_compute

    comparison_compute(result_id=result_id)


def _served_deployment_ids() -> list[int]:
    # Only a deployment with an active version has anything to evaluate or compare with its reference.
    return list(
        Deployment.objects.filter(versions__status=ModelVersion.Status.ACTIVE).values_list("pk", flat=True).distinct()
    )


@shared_task(**RETRY_POLICY)
def evaluate_all_task() -> None:
    """Beat, each sweep: one evaluation task per served deployment that is due, so one slow deployment does not
    hold up the rest (due: not evaluated for EVALUATION_INTERVAL_MINUTES, monitoring/selectors/checks.py)."""
    for deployment_id in selectors.deployments_due_for_evaluation(deployment_ids=_served_deployment_ids(),
                                                                  now=timezone.now()):
        evaluate_deployment_task.delay(deployment_id)


@shared_task(**RETRY_POLICY)
def check_drift_all_task() -> None:
    """Beat, each sweep: one drift check per served deployment whose drift interval has passed."""
    for deployment_id in selectors.deployments_due_for_drift(deployment_ids=_served_deployment_ids(), now=timezone.now()):
        check_drift_task.delay(deployment_id)


# While another indexer holds the deployment, a task comes back after this long instead of blocking a worker.
INDEX_BUSY_RETRY_SECONDS = 2
# An indexer at work also takes the batches stored meanwhile, for up to this long: a stream of batches (the
# serving client's, Prefer: respond-async) is indexed as it comes instead of by tasks back from a busy retry. Not
# longer: it holds one worker of the queue that evaluations and drift checks share.
INDEX_DRAIN_SECONDS = 10


# acks_late, and retried when its worker dies: indexing is idempotent (the killed run's rows were rolled back
# with its transaction), and a batch left pending for the beat's sweep is worse than a redo. The indexer's lock
# is a Postgres row lock, which a dead worker's connection releases at once: the retry can come soon.
@shared_task(acks_late=True, retry_on_worker_lost=True, default_retry_delay=2, **RETRY_POLICY)
def index_batches_task(deployment_id: int) -> None:
    """Put the deployment's newly accepted batches in the per-row index."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        background.flag_clear(indexing.pending_flag(deployment_id))
    # Not waiting on the lock: tasks share the default queue with evaluations and drift checks, and a run
    # already at work may have read the pending list before the batch this task came for.
    if services.batches_index(deployment_id=deployment_id, wait=False, drain_s=INDEX_DRAIN_SECONDS).busy:
        index_batches_task.apply_async((deployment_id,), countdown=INDEX_BUSY_RETRY_SECONDS)


@shared_task(**RETRY_POLICY)
def index_pending_all_task() -> None:
    """Beat: index what the per-batch tasks missed (a worker down when they were sent, or a lost race)."""
    for deployment_id in selectors.deployments_with_pending_batches():
        try:
            services.batches_index(deployment_id=deployment_id, wait=False)
        except Exception:  # one deployment's failure must not starve the others of their sweep
            logger.exception("indexing the pending batches of deployment %s failed", deployment_id)


@shared_task(**RETRY_POLICY)
def reap_stale_jobs_task() -> None:
    """Beat: fail the maintenance jobs whose worker died mid-job, so none stays "running" forever."""
    from workers.jobs import jobs_reap

    reaped = jobs_reap()
    if reaped:
        logger.warning("failed %d maintenance job(s) whose worker stopped: %s", len(reaped), reaped)


@shared_task(soft_time_limit=CHECK_TIME_LIMIT - 60, time_limit=CHECK_TIME_LIMIT, **RETRY_POLICY)
def collect_media_garbage_task() -> None:
    """Beat: delete media-store files that no row names any more (rejected batches, deleted deployments)."""
    deleted = services.storage_collect_garbage()
    if deleted:
        logger.info("deleted %d unreferenced file(s) from the media store", deleted)


# One deployment's purge gets this long per task; an unfinished one is queued again (it resumes where it
# stopped), so a first purge of a year of traffic never holds a worker for hours.
PURGE_BUDGET_SECONDS = 300


@shared_task(**RETRY_POLICY)
def purge_all_task() -> None:
    """Beat, nightly: each deployment's retention purge, as its own task."""
    for deployment_id in Deployment.objects.order_by("pk").values_list("pk", flat=True):
        purge_deployment_task.delay(deployment_id)


@shared_task(acks_late=True, soft_time_limit=CHECK_TIME_LIMIT - 60, time_limit=CHECK_TIME_LIMIT, **RETRY_POLICY)
def purge_deployment_task(deployment_id: int) -> None:
    """Apply one deployment's retention (services.deployment_purge). acks_late: the purge resumes what a
    killed run claimed, so a redelivery only finishes it."""
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None:
        return
    with deployment_lock("purge", deployment_id) as acquired:
        if not acquired:
            return
        outcome = services.deployment_purge(deployment=deployment, budget_seconds=PURGE_BUDGET_SECONDS)
    if outcome.deleted_anything:
        logger.info("retention purge of deployment %s: %s", deployment_id, outcome.as_dict())
    if not outcome.finished and not settings.CELERY_TASK_ALWAYS_EAGER:
        purge_deployment_task.delay(deployment_id)


# ---------------------------------------------------------------- alert delivery (workers/notifications/)


@shared_task(acks_late=True, **RETRY_POLICY)  # acks_late: delivery claims its row first, so a redelivery is a no-op
def deliver_notification_task(notification_id: int) -> None:
    """Send one notification (claimed pending -> sending); schedule its retry, or the next one of its group."""
    from workers.notifications.delivery import deliver

    result = deliver(notification_id)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return  # in-process: a countdown would run at once; the sweep sends retries when they are due
    if result.retry_in_s is not None:
        deliver_notification_task.apply_async((notification_id,), countdown=result.retry_in_s)
    if result.next_in_order is not None:
        deliver_notification_task.delay(result.next_in_order)
    for released_id in result.released:  # the channel answered: its backlog goes now, not at its backoff
        deliver_notification_task.delay(released_id)


@shared_task(**RETRY_POLICY)
def flush_alert_group_task(group_id: int) -> None:
    """An alert group came due (its group_wait or group_interval ended): write its notifications, which queue
    their own delivery. A group already flushed, or not due, does nothing."""
    services.alert_group_flush(group_id=group_id, now=timezone.now())


@shared_task(**RETRY_POLICY)
def sweep_notifications_task() -> None:
    """Beat, every 15 s: flush alert groups that are due, take back notifications whose worker died, queue
    the ones due (a retry whose countdown message was lost with the broker is found here too)."""
    from workers.notifications.delivery import sweep

    swept = sweep()
    if swept.requeued:
        logger.warning("took back %d notification(s) whose delivery lost its worker", swept.requeued)
    for notification_id in swept.due:
        deliver_notification_task.delay(notification_id)


@shared_task(**RETRY_POLICY)
def check_silent_deployments_task() -> None:
    """Beat: the dead man's switch, an alert for each served deployment whose predictions or labels stopped."""
    from workers.traffic_check import check_labels_stopped, check_silent_deployments

    served, now = _served_deployment_ids(), timezone.now()
    check_silent_deployments(deployment_ids=served, now=now)
    check_labels_stopped(deployment_ids=served, now=now)


@shared_task(**RETRY_POLICY)
def send_weekly_digests_task() -> None:
    """Beat, Monday 07:00 UTC: last week's digest to each member who opted in (once per user, team and week)."""
    from workers.digest import send_weekly_digests

    sent = send_weekly_digests(now=timezone.now())
    logger.info("sent %d weekly digest(s)", sent)


class ShadowReplayTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # The hard time limit kills the child before shadow_replay_compute can record it.
        replay_id = args[0] if args else kwargs.get("replay_id")
        if replay_id is not None:
            services.shadow_replay_fail(replay_id=replay_id, error="The replay stopped before it finished (time limit or worker lost).")


# One model over at most SHADOW_REPLAY_MAX_ROWS rows: seconds. Idempotent (claimed queued -> running), so acks_late.
@shared_task(base=ShadowReplayTask, acks_late=True, soft_time_limit=CHECK_TIME_LIMIT - 60, time_limit=CHECK_TIME_LIMIT,
             **RETRY_POLICY)
def shadow_replay_task(replay_id: int) -> None:
    """A new candidate run over recent production inputs (workers/shadow.py)."""
    from workers.shadow import shadow_replay_compute

    shadow_replay_compute(replay_id=replay_id)


@shared_task(**RETRY_POLICY)
def check_rollouts_task() -> None:
    """Beat, every ROLLOUT_GUARD_INTERVAL_SECONDS: the guards of every live rollout (workers/rollout.py)."""
    from workers.rollout import check_rollouts

    with deployment_lock("rollouts", 0) as mine:
        if mine:
            check_rollouts(now=timezone.now())
