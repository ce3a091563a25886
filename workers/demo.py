"""The demo: three real models trained on datasets that ship inside scikit-learn, with weeks of simulated traffic.

Only the traffic is simulated. Every model is a real ONNX file, every prediction is made by it with onnxruntime,
and every row is written by the same services, evaluations and drift checks the workers run in production.
Randomness comes from fixed seeds, never the clock, so two seeds of the demo tell the same story.
"""

from __future__ import annotations

import re
import secrets
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import takewhile
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from monitoring import alert_keys, services
from monitoring.blobs import runner_for
from monitoring.maintenance.export import estimator_to_onnx, recipe_dump
from monitoring.models import (
    Alert,
    Dataset,
    Deployment,
    DriftReport,
    EvaluationRun,
    Membership,
    ModelVersion,
    Role,
    ServingPeriod,
    Team,
)
from monitoring.rollout_models import Rollout as RolloutRecord
from monitoring.runtime import ModelRunner
from workers.drift_check import DATA_DRIFT_KEY, PREDICTION_DRIFT_KEY, check_drift
from workers.evaluation import evaluate_version
from workers.rollout import check_rollout

TEAM_NAME = "ML Platform"
USERS = (("demo", Role.APPROVER), ("operator", Role.OPERATOR), ("viewer", Role.VIEWER))
MIN_DAYS = 10  # the rollout (8 days ago) and the drift episode (last 6 days) need a few quiet days before them
LABELLED_SHARE = 0.85  # ground truth arrives for most rows, never for all
DAY = timedelta(days=1)
REFERENCE_ROWS = 2_000  # the drift reference: enough rows that its own sampling noise is small beside a day's


# ---------------------------------------------------------------- what the demo is made of


@dataclass(frozen=True)
class DriftEpisode:
    """Over the last `days` days, `features` move up by `shift_std` training standard deviations.

    The shift builds up over the first `ramp_days` days of the episode.
    """

    features: tuple[str, ...]
    shift_std: float = 1.5
    days: int = 6
    ramp_days: int = 2


@dataclass(frozen=True)
class Rollout:
    """A second version, rolled out `days_ago` days before now through the deployment's plan, its guards checked
    on simulated fleet traffic (so the history has a finished rollout with its real guard checks)."""

    estimator: Callable[[], object]
    days_ago: int
    notes: str
    comment: str


@dataclass(frozen=True)
class Candidate:
    """A version waiting for an approver when the demo starts: rolling it out is the demo's live story."""

    estimator: Callable[[], object]
    notes: str
    # True: its weights are zeroed after training, so it predicts one class for every row (the guards' story).
    single_class: bool = False


@dataclass(frozen=True)
class DemoModel:
    slug: str
    name: str
    description: str
    load: Callable[[], object]  # a scikit-learn dataset loader returning a Bunch
    estimator: Callable[[], object]
    seed: int
    test_size: float
    thresholds: dict = field(default_factory=dict)
    # Pixel intensities are whole numbers 0–16: noisy copies are rounded back, or every KS test would see drift.
    integer_features: bool = False
    noise_std: float = 0.05  # per-row gaussian noise, in training standard deviations
    drift: DriftEpisode | None = None
    rollout: Rollout | None = None
    candidates: tuple[Candidate, ...] = ()
    notes: str = ""


def _logistic(C: float) -> Callable[[], object]:
    return lambda: make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))


DEMO_MODELS: tuple[DemoModel, ...] = (
    DemoModel(
        slug="digits-mlp",
        name="Handwritten digits (MLP)",
        description="8×8 handwritten digits (scikit-learn's load_digits), a 64-unit MLP. Small dense layers: "
        "a good candidate for int8 compression.",
        load=load_digits,
        estimator=lambda: MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=0),
        seed=11,
        test_size=0.3,
        integer_features=True,
        notes="MLPClassifier(hidden=(64,)) on load_digits",
    ),
    DemoModel(
        slug="tumour-logreg",
        name="Tumour classifier (logistic regression)",
        description="Breast cancer diagnosis from 30 cell-nucleus measurements (load_breast_cancer), "
        "standard scaling and logistic regression.",
        load=load_breast_cancer,
        estimator=_logistic(0.1),
        seed=7,
        test_size=0.4,
        thresholds={"accuracy": 0.9},
        notes="StandardScaler + LogisticRegression(C=0.1) on load_breast_cancer",
        rollout=Rollout(
            # Not much weaker: at C=1.0 the model is so much surer of itself that the score-shift guard (KS D
            # on the confidence, threshold 0.2) aborts it, as it should a change that large.
            estimator=_logistic(0.2),
            days_ago=8,
            notes="StandardScaler + LogisticRegression(C=0.2): a little weaker regularisation",
            comment="Less regularisation (C=0.2) is as accurate on the held-out evaluation set; rolling out.",
        ),
        candidates=(
            Candidate(
                estimator=_logistic(0.25),
                notes="StandardScaler + LogisticRegression(C=0.25): as good as v2 on the evaluation set. "
                "Roll it out and watch the stages advance (demo plan: 10 % and 50 % for 2 minutes each).",
            ),
            Candidate(
                estimator=_logistic(0.2),
                notes="Deliberately broken for the demo: its weights are zeroed, so it answers \"benign\" for every "
                "row. Roll it out and watch the guards abort it by themselves.",
                single_class=True,
            ),
        ),
    ),
    DemoModel(
        slug="wine-forest",
        name="Wine cultivar (random forest)",
        description="Wine cultivar from 13 chemical measurements (load_wine), a 50-tree random forest.",
        load=load_wine,
        estimator=lambda: RandomForestClassifier(n_estimators=50, max_depth=4, random_state=0),
        seed=37,
        test_size=0.4,
        thresholds={"accuracy": 0.85},
        noise_std=0.1,
        # A new supplier: stronger, more acidic, darker wines. Seven of 13 features move, past the
        # dataset-level verdict (half the features drifted), and the forest's accuracy falls below its floor.
        drift=DriftEpisode(
            features=(
                "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "color_intensity", "proline",
            )
        ),
        notes="RandomForestClassifier(n_estimators=50, max_depth=4) on load_wine",
    ),
)


# ---------------------------------------------------------------- pure parts: data and traffic


def identifier(name: str) -> str:
    """'mean radius' -> 'mean_radius', 'od280/od315_of_diluted_wines' -> 'od280_od315_of_diluted_wines'."""
    return re.sub(r"\W+", "_", name).strip("_").lower()


@dataclass(frozen=True)
class Split:
    feature_names: list[str]
    X_train: np.ndarray
    y_train: np.ndarray  # string labels
    X_test: np.ndarray
    y_test: np.ndarray


def load_split(model: DemoModel) -> Split:
    bunch = model.load()
    # String labels ("benign", "class_0", "7") make the ONNX model, the API and the charts speak the same language.
    y = np.array([str(bunch.target_names[i]) for i in bunch.target])
    X_train, X_test, y_train, y_test = train_test_split(
        np.asarray(bunch.data, dtype=np.float64), y, test_size=model.test_size, random_state=model.seed, stratify=y
    )
    return Split([identifier(str(n)) for n in bunch.feature_names], X_train, y_train, X_test, y_test)


def fit(estimator_factory: Callable[[], Any], split: Split) -> Any:
    """A fitted scikit-learn classifier (anything skl2onnx converts), trained on the split's training rows."""
    estimator = estimator_factory()
    # One BLAS thread: these matrices are tiny, and on a busy two-core machine threaded BLAS made the MLP's
    # fit 10-30× slower (0.5 s against 5-18 s), spinning threads fighting other processes for the cores.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # A 200-epoch MLP has not fully converged; it is accurate enough, and the demo must stay fast.
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(split.X_train.astype(np.float32), split.y_train)
    return estimator


def day_windows(*, now: datetime, days: int) -> list[tuple[datetime, datetime]]:
    """`days` consecutive 24-hour windows, oldest first, the last one ending at `now`."""
    return [(now - (days - k) * DAY, now - (days - k - 1) * DAY) for k in range(days)]


def drift_shift(episode: DriftEpisode | None, *, day: int, days: int) -> float:
    """How far (in standard deviations) the episode's features have moved on day `day` of `days`."""
    if episode is None:
        return 0.0
    into = day - (days - episode.days)  # 0 on the episode's first day
    if into < 0:
        return 0.0
    return episode.shift_std * min(1.0, (into + 1) / episode.ramp_days)


@dataclass(frozen=True)
class DayTraffic:
    X: np.ndarray  # rounded to 4 decimals: what the client sends is what the model sees
    y_true: np.ndarray
    offsets_s: np.ndarray  # seconds into the window, sorted
    labelled: np.ndarray  # bool: whether ground truth arrives for the row


def simulate_day(
    model: DemoModel, split: Split, rng: np.random.Generator, *, n: int, shift_std: float, labelled_share: float
) -> DayTraffic:
    """Bootstrap held-out rows with small noise; shift the drift episode's features by `shift_std` std."""
    rows = rng.integers(0, len(split.X_test), n)
    std = split.X_train.std(axis=0)
    X = split.X_test[rows] + rng.normal(0.0, 1.0, (n, split.X_test.shape[1])) * std * model.noise_std
    # Stay inside the training range: noise must not invent values the reference never has (a negative area).
    X = np.clip(X, split.X_train.min(axis=0), split.X_train.max(axis=0))
    if model.integer_features:
        X = np.round(X)
    if shift_std and model.drift is not None:
        for name in model.drift.features:
            j = split.feature_names.index(name)
            X[:, j] += shift_std * std[j]
    return DayTraffic(
        X=np.round(X, 4),
        y_true=split.y_test[rows],
        offsets_s=np.sort(rng.uniform(0.0, DAY.total_seconds(), n)),
        labelled=rng.random(n) < labelled_share,
    )


def daily_volume(rng: np.random.Generator, *, per_day: int, weekday: int) -> int:
    """Roughly per_day predictions, fewer at weekends, with some day-to-day jitter."""
    factor = 0.7 if weekday >= 5 else 1.0
    return max(40, int(round(per_day * factor * rng.uniform(0.85, 1.15))))


# ---------------------------------------------------------------- writing it through the services


@dataclass
class SeedResult:
    slug: str
    created: bool
    days: int = 0
    predictions: int = 0
    labels: int = 0
    evaluations: int = 0
    drift_reports: int = 0
    drifted_reports: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        if not self.created:
            return f"{self.slug}: already seeded, left as it is"
        return (
            f"{self.slug}: {self.days} days, {self.predictions:,} predictions ({self.labels:,} labelled), "
            f"{self.evaluations} evaluations, {self.drift_reports} drift reports "
            f"({self.drifted_reports} with drift) in {self.seconds:.1f} s"
        )


# The local demo's password for all three users. Weak on purpose and set without the validators, so only
# `make demo` (docker/demo.sh) asks for it, with seed_demo --demo-passwords; nothing else ever sets it.
DEMO_PASSWORD = "demo"


def users_ensure(
    *, team: Team, password: str | None, log: Callable[[str], None] = print, check: bool = True
) -> dict[str, User]:
    """The demo's users with their roles.

    With a password, every demo user gets it (checked by AUTH_PASSWORD_VALIDATORS when `check`). Without one,
    a user that exists keeps the password it has, and a new one gets a random password, logged once.
    """
    if password is not None and check:
        try:
            validate_password(password)
        except ValidationError as exc:
            raise ValueError("The password is too weak: " + " ".join(exc.messages)) from None
    users = {}
    for username, role in USERS:
        user, created = User.objects.get_or_create(username=username)
        if password is not None:
            user.set_password(password)
            user.save(update_fields=["password"])
        elif created:
            generated = secrets.token_urlsafe(12)  # 96 bits
            user.set_password(generated)
            user.save(update_fields=["password"])
            log(f"Created user {username} ({role}) with the password {generated} (shown once).")
        Membership.objects.update_or_create(team=team, user=user, defaults={"role": role})
        users[username] = user
    return users


def seed_demo(
    *,
    days: int = 30,
    per_day: int = 200,
    password: str | None = None,
    demo_passwords: bool = False,
    log: Callable[[str], None] = print,
) -> list[SeedResult]:
    """Seed the demo team, users and deployments; a deployment that already exists is left alone.

    `demo_passwords` gives every demo user DEMO_PASSWORD, for `make demo` only; see users_ensure for `password`.
    """
    if days < MIN_DAYS:
        raise ValueError(f"The demo needs at least {MIN_DAYS} days of history.")
    if per_day < 50:
        raise ValueError("The demo needs at least 50 predictions a day, or the daily drift checks lack data.")
    team = services.team_get_or_create(name=TEAM_NAME)
    if demo_passwords:
        users = users_ensure(team=team, password=DEMO_PASSWORD, log=log, check=False)
    else:
        users = users_ensure(team=team, password=password, log=log)
    now = timezone.now()
    results = []
    for model in DEMO_MODELS:
        if Deployment.objects.filter(slug=model.slug).exists():
            result = SeedResult(slug=model.slug, created=False)
        else:
            result = seed_deployment(
                model, team=team, by=users["demo"], uploader=users["operator"], days=days, per_day=per_day, now=now
            )
        log(result.line())
        results.append(result)
    return results


def seed_deployment(
    model: DemoModel, *, team: Team, by: User, uploader: User, days: int, per_day: int, now: datetime
) -> SeedResult:
    """Build one deployment and replay its history day by day, all or nothing: an interrupted seed leaves no
    half-built deployment behind, so the next run builds it again.

    `uploader` registers the rollout's candidate and `by` approves it: the deployments require two people.
    """
    started = time.perf_counter()
    split = load_split(model)
    windows = day_windows(now=now, days=days)
    history_start = windows[0][0]
    rollout_day = days - model.rollout.days_ago if model.rollout else None
    result = SeedResult(slug=model.slug, created=True, days=days)
    with transaction.atomic():
        deployment, first = _deploy(model, split, team=team, by=by)
        # Short stages, so a new user who rolls the demo's candidate out watches it advance (docs/rollout.md);
        # the seeded rollout in the history ran by the same plan.
        services.rollout_plan_set(deployment=deployment, by=by, stages=DEMO_ROLLOUT_STAGES)
        result.evaluations += _count(
            evaluate_version(version=first, source=EvaluationRun.Source.EVALUATION_SET, measured_at=history_start)
        )
        for day, (start, end) in enumerate(windows):
            if day == rollout_day:
                rolled = _roll_out(deployment, model, split, by=by, uploader=uploader, at=start, result=result)
                result.evaluations += rolled
            serving = deployment.active_version()
            # A stream of its own for each day, counted back from today: a weekend's lower volume then changes
            # that day's rows only, not every day after it (which made healthy deployments drift on some weekdays).
            rng = np.random.default_rng([model.seed, days - 1 - day])
            traffic = simulate_day(
                model, split, rng,
                n=daily_volume(rng, per_day=per_day, weekday=start.weekday()),
                shift_std=drift_shift(model.drift, day=day, days=days),
                # Ground truth comes late: none has arrived yet for the last day.
                labelled_share=LABELLED_SHARE if day < days - 1 else 0.0,
            )
            created, labelled = _ingest_day(
                deployment, runner_for(serving), traffic, start=start, prefix=f"{model.slug}-{day}"
            )
            result.predictions += created
            result.labels += labelled
            # What the scheduled evaluation would have recorded at the end of each day, with the same windows:
            # the evaluation set (and latency), the last 24 hours, and the rolling evaluation window.
            # Past days are history; only the latest labelled day decides today's threshold alerts.
            today = day == days - 2
            result.evaluations += _count(evaluate_version(
                version=serving, source=EvaluationRun.Source.EVALUATION_SET, measured_at=end, raise_alerts=today
            ))
            if labelled:
                result.evaluations += _count(evaluate_version(
                    version=serving, source=EvaluationRun.Source.PRODUCTION_DAY, window_start=start, window_end=end,
                    measured_at=end, latency=False, raise_alerts=False,
                ))
                result.evaluations += _count(evaluate_version(
                    version=serving, source=EvaluationRun.Source.PRODUCTION, window_end=end, measured_at=end,
                    latency=False, raise_alerts=today,
                ))
            # Day by day, like the scheduled check: each window is judged against the version serving then,
            # and the latest window decides which drift alerts stay open.
            report = check_drift(deployment=deployment, window_start=start, window_end=end)
            if report is not None:
                result.drift_reports += 1
                result.drifted_reports += int(report.drifted)
        _date_history(deployment, start=history_start)
        for candidate in model.candidates:
            result.evaluations += _add_candidate(deployment, candidate, split, uploader=uploader, now=now)
    result.seconds = time.perf_counter() - started
    return result


def _count(run: EvaluationRun | None) -> int:
    return int(run is not None and run.status == EvaluationRun.Status.SUCCEEDED)


def _deploy(model: DemoModel, split: Split, *, team: Team, by: User) -> tuple[Deployment, ModelVersion]:
    """The deployment, its first (active) version, and its reference and evaluation datasets."""
    estimator = fit(model.estimator, split)
    deployment = services.deployment_create(
        team=team, name=model.name, slug=model.slug, description=model.description,
        feature_names=split.feature_names, class_labels=[str(c) for c in estimator.classes_], by=by,
        metric_thresholds=model.thresholds,
    )
    first = _register(deployment, estimator, split, by=by, notes=model.notes)
    # The reference is traffic from a quiet launch period, not the training split: the model is surer of
    # rows it was trained on, and against those, any new traffic shows "confidence drift" (the MLP's did).
    launch = simulate_day(
        model, split, np.random.default_rng(model.seed + 1), n=REFERENCE_ROWS, shift_std=0.0, labelled_share=1.0
    )
    services.dataset_register(
        deployment=deployment, kind=Dataset.Kind.REFERENCE, name="launch traffic (held-out rows, production noise)",
        X=launch.X, y=launch.y_true, by=by,
    )
    services.dataset_register(
        deployment=deployment, kind=Dataset.Kind.EVALUATION, name="held-out split",
        X=split.X_test, y=split.y_test, by=by,
    )
    deployment.refresh_from_db()
    return deployment, first


def _register(
    deployment: Deployment, estimator: Any, split: Split, *, by: User, notes: str, parent: ModelVersion | None = None
) -> ModelVersion:
    data = estimator_to_onnx(
        estimator, feature_names=split.feature_names, class_labels=[str(c) for c in estimator.classes_]
    )
    return services.version_register(
        deployment=deployment, data=data, recipe=recipe_dump(estimator), by=by, notes=notes, parent=parent
    )


def _roll_out(
    deployment: Deployment, model: DemoModel, split: Split, *, by: User, uploader: User, at: datetime,
    result: SeedResult,
) -> int:
    """Register the rollout's candidate (by `uploader`), evaluate it on the evaluation set, and roll it out (by
    `by`) from `at`, as the live demo does: the simulated fleet's traffic, tagged by the version that served it,
    and the worker's own guard check (workers.rollout.check_rollout) every guard interval until it completes.

    Returns how many evaluations succeeded, for the progress line.
    """
    assert model.rollout is not None
    previous = deployment.active_version()
    assert previous is not None
    candidate = _register(
        deployment, fit(model.rollout.estimator, split), split, by=uploader, notes=model.rollout.notes,
        parent=previous,
    )
    run = evaluate_version(
        version=candidate, source=EvaluationRun.Source.EVALUATION_SET, measured_at=at - timedelta(hours=2),
        raise_alerts=False,
    )
    record = services.rollout_start(version=candidate, by=by, comment=model.rollout.comment)
    # The services stamp the clock's time; the story needs the rollout `at` days ago.
    RolloutRecord.objects.filter(pk=record.pk).update(started_at=at, stage_started_at=at)
    ModelVersion.objects.filter(pk=candidate.pk).update(created_at=at - timedelta(hours=3), decided_at=at)
    runners = {False: runner_for(previous), True: runner_for(candidate)}
    rng = np.random.default_rng([model.seed, 14])
    now, step, truth = at, 0, []
    while (record := RolloutRecord.objects.select_related("deployment", "candidate", "baseline").get(pk=record.pk)).is_live:
        step += 1
        if step > MAX_SEEDED_CHECKS:
            raise RuntimeError(f"{model.slug}: the seeded rollout did not complete in {MAX_SEEDED_CHECKS} checks")
        traffic = simulate_day(model, split, rng, n=ROLLOUT_ROWS_PER_CHECK, shift_std=0.0,
                               labelled_share=LABELLED_SHARE)
        truth += [{"id": f"{model.slug}-rollout-{step}-{i}", "label": str(traffic.y_true[i])}
                  for i in np.flatnonzero(traffic.labelled)]
        # A share of the fleet's instances serves the candidate; here, as many of the rows.
        on_candidate = rng.random(len(traffic.X)) < record.share
        offsets = np.sort(rng.uniform(0.0, GUARD_INTERVAL.total_seconds(), len(traffic.X)))
        for serves_candidate in (False, True):
            rows = np.flatnonzero(on_candidate == serves_candidate)
            if len(rows):
                version = candidate if serves_candidate else previous
                batch = _prediction_rows(runners[serves_candidate], traffic.X[rows], start=now,
                                         offsets_s=offsets[rows], ids=[f"{model.slug}-rollout-{step}-{i}" for i in rows])
                result.predictions += services.predictions_ingest(
                    deployment=deployment, version=version.number, rows=batch).created
        now += GUARD_INTERVAL
        outcome = check_rollout(rollout=record, now=now)
        if outcome == "aborted":
            raise RuntimeError(f"{model.slug}: a guard aborted the seeded rollout of v{candidate.number}")
        if outcome == "advanced":
            RolloutRecord.objects.filter(pk=record.pk).update(stage_started_at=now)
    # Ground truth arrives after the rollout (a day later, _date_history): its checks saw none, as live ones would.
    result.labels += services.labels_ingest(deployment=deployment, rows=truth).updated
    # Completed at `now`: no watch period left over from eight days ago.
    RolloutRecord.objects.filter(pk=record.pk).update(ended_at=now, watch_until=None)
    ModelVersion.objects.filter(pk=candidate.pk).update(activated_at=now)
    ModelVersion.objects.filter(pk=previous.pk).update(retired_at=now)
    ServingPeriod.objects.filter(version=previous).update(ended_at=now)
    ServingPeriod.objects.filter(version=candidate).update(started_at=now)
    return _count(run)


# The simulated fleet during the seeded rollout: 120 rows per 30-second guard interval, so the canary's 10 %
# reaches the class-shift guard's 200 rows in about 8 minutes (a busier hour than a demo day's average).
GUARD_INTERVAL = timedelta(seconds=30)
ROLLOUT_ROWS_PER_CHECK = 120
MAX_SEEDED_CHECKS = 100


def _add_candidate(deployment: Deployment, candidate: Candidate, split: Split, *, uploader: User, now: datetime) -> int:
    """Register a candidate for the live demo (by `uploader`, so the demo approver may approve it) and score it
    on the evaluation set. Returns how many evaluations succeeded."""
    estimator = fit(candidate.estimator, split)
    if candidate.single_class:
        _break(estimator)
    version = _register(deployment, estimator, split, by=uploader, notes=candidate.notes,
                        parent=deployment.active_version())
    run = evaluate_version(version=version, source=EvaluationRun.Source.EVALUATION_SET,
                           measured_at=now - timedelta(minutes=30), raise_alerts=False)
    ModelVersion.objects.filter(pk=version.pk).update(created_at=now - timedelta(hours=1))
    return _count(run)


def _break(estimator: Any) -> None:
    """Zero a binary logistic regression's weights: the intercept alone decides, p(classes_[1]) = 1/(1+e^3)
    ≈ 0.05, so every row gets classes_[0] (the tumour model's "benign") with the same confidence."""
    final = estimator[-1] if hasattr(estimator, "steps") else estimator
    assert len(final.classes_) == 2, "the demo's broken candidate is a binary logistic regression"
    final.coef_[:] = 0.0
    final.intercept_[:] = -3.0


# 10 % and 50 % of the simulated fleet for two minutes each, then everyone.
DEMO_ROLLOUT_STAGES = [
    {"share": 0.1, "min_minutes": 2, "min_predictions": 100},
    {"share": 0.5, "min_minutes": 2, "min_predictions": 200},
    {"share": 1.0, "min_minutes": 0, "min_predictions": 0},
]


def _ingest_day(
    deployment: Deployment, runner: ModelRunner, traffic: DayTraffic, *, start: datetime, prefix: str
) -> tuple[int, int]:
    """Predict with the serving model, ingest the day's predictions, then the ground truth that arrived.

    One batch per day: a few hundred rows, well under MAX_PREDICTION_BATCH.
    """
    ids = [f"{prefix}-{i}" for i in range(len(traffic.X))]
    rows = _prediction_rows(runner, traffic.X, start=start, offsets_s=traffic.offsets_s, ids=ids)
    created = services.predictions_ingest(deployment=deployment, rows=rows).created
    labels = [{"id": ids[i], "label": str(traffic.y_true[i])} for i in np.flatnonzero(traffic.labelled)]
    labelled = services.labels_ingest(deployment=deployment, rows=labels).updated if labels else 0
    return created, labelled


def _prediction_rows(
    runner: ModelRunner, X: np.ndarray, *, start: datetime, offsets_s: np.ndarray, ids: list[str]
) -> list[dict]:
    """The rows the client would send for X, predicted by the serving model, `offsets_s` seconds after `start`."""
    predicted = runner.predict(X)
    return [
        {
            "id": ids[i],
            "timestamp": start + timedelta(seconds=float(offsets_s[i])),
            "features": X[i].tolist(),
            "predicted_label": predicted.labels[i],
            "probabilities": np.round(predicted.probabilities[i], 6).clip(0.0, 1.0).tolist()
            if predicted.probabilities is not None
            else None,
        }
        for i in range(len(ids))
    ]


def _date_history(deployment: Deployment, *, start: datetime) -> None:
    """Give rows the times of the story rather than the seconds the seed took.

    The services stamp `timezone.now()`; replayed history would otherwise all look a minute old.
    Audit events are append-only and keep the real time they were written.
    """
    Deployment.objects.filter(pk=deployment.pk).update(created_at=start - timedelta(hours=1))
    deployment.datasets.update(created_at=start - timedelta(minutes=30))
    deployment.versions.filter(number=1).update(created_at=start - timedelta(minutes=45), activated_at=start)
    deployment.serving_periods.filter(version__number=1).update(started_at=start)
    deployment.prediction_batches.update(received_at=F("t_max"))
    # Ground truth arrives about a day after the prediction.
    deployment.predictions.filter(label_index__isnull=False).update(labelled_at=F("timestamp") + DAY)
    deployment.evaluations.update(created_at=F("measured_at"), finished_at=F("measured_at"))
    DriftReport.objects.filter(deployment=deployment).update(created_at=F("window_end"))
    _date_open_alerts(deployment)


def _date_open_alerts(deployment: Deployment) -> None:
    """An open alert dates from the first of the trailing run of bad windows that keeps it open.

    Replayed checks raise and refresh alerts within seconds; the story needs "open for 5 days, seen 6 times".
    """
    reports = list(
        deployment.drift_reports.order_by("window_end").values_list("window_end", "drifted", "prediction_drift")
    )
    runs = list(
        deployment.evaluations.filter(source=EvaluationRun.Source.PRODUCTION, status=EvaluationRun.Status.SUCCEEDED)
        .order_by("measured_at")
        .values_list("measured_at", "metrics")
    )
    for alert in deployment.alerts.filter(status=Alert.Status.OPEN):
        if alert.dedup_key == DATA_DRIFT_KEY:
            bad = [(at, drifted) for at, drifted, _ in reports]
        elif alert.dedup_key == PREDICTION_DRIFT_KEY:
            bad = [(at, bool(shares.get("drifted"))) for at, _, shares in reports]
        elif alert.kind == Alert.Kind.METRIC_BELOW_THRESHOLD and alert.evaluation_run_id is not None:
            name = alert_keys.metric_of(alert.dedup_key) or ""
            floor = deployment.metric_thresholds.get(name)
            bad = [(at, floor is not None and (metrics.get(name) or 1.0) < floor) for at, metrics in runs]
        else:
            continue
        streak = list(takewhile(lambda item: item[1], reversed(bad)))
        if streak:
            Alert.objects.filter(pk=alert.pk).update(created_at=streak[-1][0], occurrences=len(streak))
