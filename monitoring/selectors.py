"""Reads: plain data for views, the API and chart builders."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Max, QuerySet
from django.utils import timezone

from monitoring import batches, pgcopy, storage
from monitoring.comparison import Comparison
from monitoring.models import (
    ROLE_RANK,
    Alert,
    Dataset,
    Deployment,
    DriftFeaturePoint,
    DriftReport,
    EvaluationRun,
    MaintenanceJob,
    Membership,
    MetricPoint,
    ModelVersion,
    Prediction,
    PredictionBatch,
    ReferenceProfile,
    Role,
    VersionComparisonResult,
)


def role_for(*, user: AbstractBaseUser, deployment: Deployment) -> str | None:
    """The user's role on a deployment through its team; superusers approve everywhere."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.APPROVER
    return Membership.objects.filter(team_id=deployment.team_id, user=user).values_list("role", flat=True).first()


def role_allows(role: str | None, need: str) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(need)]


def deployments_visible_to(*, user: AbstractBaseUser) -> QuerySet[Deployment]:
    deployments = Deployment.objects.select_related("team")
    if user.is_superuser:
        return deployments
    return deployments.filter(team__memberships__user=user).distinct()


class Health:
    OK = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "no data"


@dataclass(frozen=True)
class DeploymentSummary:
    deployment: Deployment
    health: str
    active_version: ModelVersion | None
    open_alerts: int
    candidates: int
    latest_metrics: dict
    predictions_24h: int
    last_prediction_at: datetime | None


def deployment_summary(*, deployment: Deployment) -> DeploymentSummary:
    open_alerts = list(
        deployment.alerts.filter(status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED]).values_list("severity", flat=True)
    )
    active = deployment.active_version()
    latest = (
        EvaluationRun.objects.filter(deployment=deployment, version=active, status=EvaluationRun.Status.SUCCEEDED)
        .order_by("-measured_at")
        .first()
        if active
        else None
    )
    if Alert.Severity.CRITICAL in open_alerts:
        health = Health.CRITICAL
    elif open_alerts:
        health = Health.WARNING
    elif latest is None:
        health = Health.UNKNOWN
    else:
        health = Health.OK
    since = timezone.now() - timedelta(hours=24)
    predictions_24h, last = prediction_counts(deployment=deployment, since=since)
    return DeploymentSummary(
        deployment=deployment,
        health=health,
        active_version=active,
        open_alerts=len(open_alerts),
        candidates=deployment.versions.filter(status=ModelVersion.Status.CANDIDATE).count(),
        latest_metrics=latest.metrics if latest else {},
        predictions_24h=predictions_24h,
        last_prediction_at=last,
    )


def per_class_rows(*, metrics: dict) -> list[dict]:
    """The per-class table of one evaluation's metrics: [{"label", "precision", "recall", "f1", "support"}]."""
    per_class, labels = metrics.get("per_class") or {}, metrics.get("labels") or []
    if not per_class or len(per_class.get("f1", [])) != len(labels):
        return []
    return [
        {"label": label, **{name: per_class[name][i] for name in ("precision", "recall", "f1", "support")}}
        for i, label in enumerate(labels)
    ]


def metric_series(
    *, deployment: Deployment, names: list[str], source: str, since: datetime | None = None
) -> dict[str, dict[str, list]]:
    """{"accuracy": {"at": [...], "value": [...], "version": [...]}, ...}, oldest first."""
    points = MetricPoint.objects.filter(deployment=deployment, name__in=names, source=source)
    if since is not None:
        points = points.filter(at__gte=since)
    series: dict[str, dict[str, list]] = {name: {"at": [], "value": [], "version": []} for name in names}
    for name, at, value, number in points.order_by("at").values_list("name", "at", "value", "version__number"):
        series[name]["at"].append(at)
        series[name]["value"].append(value)
        series[name]["version"].append(number)
    return series


def latest_drift_report(*, deployment: Deployment) -> DriftReport | None:
    return deployment.drift_reports.order_by("-window_end").first()


def drift_share_series(*, deployment: Deployment, since: datetime | None = None) -> dict[str, list]:
    reports = deployment.drift_reports.all()
    if since is not None:
        reports = reports.filter(window_end__gte=since)
    rows = list(reports.order_by("window_end").values_list("window_end", "share_drifted", "drifted"))
    return {"at": [r[0] for r in rows], "share": [r[1] for r in rows], "drifted": [r[2] for r in rows]}


@dataclass(frozen=True)
class VersionRow:
    version: ModelVersion
    evaluation_set: dict
    production: dict


def versions_with_metrics(*, deployment: Deployment) -> list[VersionRow]:
    """Each version with its latest metrics on the evaluation set and on production traffic, newest first."""
    versions = list(deployment.versions.select_related("created_by", "decided_by", "parent").order_by("-number"))
    latest: dict[tuple[int, str], dict] = {}
    runs = EvaluationRun.objects.filter(deployment=deployment, status=EvaluationRun.Status.SUCCEEDED).order_by("measured_at")
    for version_id, source, metrics in runs.values_list("version_id", "source", "metrics"):
        latest[(version_id, source)] = metrics  # later runs overwrite earlier ones
    return [
        VersionRow(
            version=v,
            evaluation_set=latest.get((v.pk, EvaluationRun.Source.EVALUATION_SET), {}),
            production=latest.get((v.pk, EvaluationRun.Source.PRODUCTION), {}),
        )
        for v in versions
    ]


def alerts_for(*, deployment: Deployment | None = None, user: AbstractBaseUser | None = None, unresolved_only: bool = False):
    alerts = Alert.objects.select_related("deployment").order_by("-last_seen_at")
    if deployment is not None:
        alerts = alerts.filter(deployment=deployment)
    if user is not None:
        alerts = alerts.filter(deployment__in=deployments_visible_to(user=user))
    if unresolved_only:
        alerts = alerts.filter(status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED])
    return alerts


def jobs_for(*, deployment: Deployment) -> QuerySet[MaintenanceJob]:
    return deployment.jobs.select_related("source_version", "candidate", "requested_by").order_by("-created_at")


@dataclass(frozen=True)
class ProductionWindow:
    X: np.ndarray  # float32, n × n_features
    predicted: np.ndarray  # class labels as strings
    labels: np.ndarray | None  # true labels as strings, only for labelled_only windows
    timestamps: np.ndarray  # datetime64[us], UTC
    request_ids: np.ndarray  # object array of str
    probabilities: np.ndarray | None = None  # float32, n × n_classes; NaN rows where a prediction had none
    predicted_index: np.ndarray | None = None  # int16 index into class_labels
    label_index: np.ndarray | None = None  # int16 index into class_labels (labelled_only)

    def newest(self, n: int) -> ProductionWindow:
        """The last n rows (the window is oldest first), every column cut alike."""
        return ProductionWindow(
            **{f.name: (None if (v := getattr(self, f.name)) is None else v[-n:]) for f in fields(self)}
        )

    def first_timestamp(self) -> datetime:
        return batches.us_to_datetime(int(self.timestamps[0].astype("datetime64[us]").astype(np.int64)))


_STORED_COLUMNS = ("timestamps_us", "features", "predicted", "probabilities", "request_ids")
_BATCH_COLUMNS = ("id", "n_rows", *_STORED_COLUMNS, "columns_sha256")


def stored_columns(batch: PredictionBatch, names: tuple[str, ...] = _STORED_COLUMNS) -> dict[str, memoryview | bytes | None]:
    """{column: raw little-endian bytes} of a batch, from its row or, for a large batch, from its .npz in the
    media store, verified against its sha256 first (storage.BlobIntegrityError, BlobMissingError)."""
    in_media = set(names) & set(batches.NPZ_MEMBERS) if batch.columns_sha256 else set()
    stored = {name: getattr(batch, name) for name in names if name not in in_media}
    return stored | (_columns_in_media(batch.columns_sha256, tuple(in_media)) if in_media else {})


def _columns_in_media(sha256: str, names: tuple[str, ...] = tuple(batches.NPZ_MEMBERS)) -> dict[str, memoryview | None]:
    return batches.stored_columns_from_npz(storage.read_blob(settings.MEDIA_ROOT, sha256), names)


def _with_columns(row: tuple) -> tuple:
    """(id, n_rows, column bytes...) of a _BATCH_COLUMNS row, with the columns kept in the media store read there."""
    *head, sha256 = row
    sha256 = bytes(sha256).decode() if isinstance(sha256, memoryview) else sha256
    if not sha256:
        return tuple(head)
    in_row = dict(zip(_STORED_COLUMNS, head[2:])) | _columns_in_media(sha256)
    return (head[0], head[1], *(in_row[name] for name in _STORED_COLUMNS))


def _read_batches(deployment: Deployment, *, start: datetime, end: datetime, ids: list[int] | None) -> list:
    """(id, n_rows, column bytes...) of the deployment's batches overlapping [start, end), oldest first."""
    batches = PredictionBatch.objects.live().filter(deployment=deployment, t_min__lt=end, t_max__gte=start)
    if ids is not None:
        batches = batches.filter(pk__in=ids)
    if connection.vendor != "postgresql":
        return [_with_columns(row) for row in batches.order_by("t_min", "pk").values_list(*_BATCH_COLUMNS)]
    table = PredictionBatch._meta.db_table
    sql = (
        f"SELECT {', '.join(_BATCH_COLUMNS)} FROM {table} WHERE deployment_id = %s AND t_min < %s AND t_max >= %s"
        f" AND state <> '{PredictionBatch.State.REJECTED}'"
        + (" AND id = ANY(%s)" if ids is not None else "") + " ORDER BY t_min, id"
    )
    params = [deployment.pk, end, start] + ([list(ids)] if ids is not None else [])
    with connection.cursor() as cursor:
        rows = pgcopy.parse_rows(pgcopy.copy_out(cursor.cursor, sql, params))
    return [_with_columns((int.from_bytes(r[0], "big"), int.from_bytes(r[1], "big"), *r[2:])) for r in rows]


def _labelled_rows(deployment: Deployment, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(batch id, row, label index) of the labelled rows in [start, end), through the partial index."""
    rows = Prediction.objects.filter(
        deployment=deployment, timestamp__gte=start, timestamp__lt=end, label_index__isnull=False
    )
    if connection.vendor != "postgresql":
        values = np.array(list(rows.values_list("batch_id", "row", "label_index")), dtype=np.int64).reshape(-1, 3)
        return values[:, 0], values[:, 1], values[:, 2].astype(np.int16)
    sql = (
        f"SELECT batch_id, row, label_index FROM {Prediction._meta.db_table} "
        "WHERE deployment_id = %s AND timestamp >= %s AND timestamp < %s AND label_index IS NOT NULL"
    )
    with connection.cursor() as cursor:
        stream = pgcopy.copy_out(cursor.cursor, sql, [deployment.pk, start, end])
    columns = pgcopy.parse_fixed(stream, [">i8", ">i4", ">i2"])
    return columns["f0"], columns["f1"].astype(np.int64), columns["f2"]


def production_window(
    *, deployment: Deployment, start: datetime, end: datetime, labelled_only: bool = False, limit: int | None = None
) -> ProductionWindow:
    """Traffic with start <= timestamp < end, oldest first, read from the columnar batches.

    labelled_only keeps the rows whose true label has arrived and fills `labels`. Each output array is
    allocated once and filled batch by batch (a plain copy when a whole batch is wanted), because at a
    million rows every extra pass over X costs a tenth of a second.
    """
    n_features, classes = deployment.n_features, np.asarray([str(c) for c in deployment.class_labels])
    wanted: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
    if labelled_only:
        wanted = _labelled_by_batch(*_labelled_rows(deployment, start, end))
    stored = _read_batches(deployment, start=start, end=end, ids=list(wanted) if wanted is not None else None)
    lo, hi = batches.datetime_to_us(start), batches.datetime_to_us(end)
    selections = []
    for batch_id, n_rows, t_raw, *_ in stored:
        if wanted is not None:
            take, codes = wanted[batch_id]
        else:
            t = np.frombuffer(t_raw, dtype="<i8")
            take, codes = np.flatnonzero((t >= lo) & (t < hi)), None
        # A whole batch, in order, is a slice: copied without a gather.
        selections.append((slice(None) if len(take) == n_rows else take, len(take), codes))
    n = sum(size for _, size, _ in selections)
    k = len(classes)
    any_probabilities = any(row[5] is not None for row in stored)
    X = np.empty((n, n_features), dtype=np.float32)
    t_out = np.empty(n, dtype=np.int64)
    predicted_index = np.empty(n, dtype=np.int16)
    label_index = np.empty(n, dtype=np.int16) if labelled_only else None
    probabilities = np.full((n, k), np.nan, dtype=np.float32) if any_probabilities else None
    ids = np.empty(n, dtype=object)
    at = 0
    for (batch_id, n_rows, t_raw, x_raw, p_raw, proba_raw, ids_raw), (take, size, codes) in zip(stored, selections):
        part = slice(at, at + size)
        t_out[part] = np.frombuffer(t_raw, dtype="<i8")[take]
        X[part] = np.frombuffer(x_raw, dtype="<f4").reshape(n_rows, n_features)[take]
        predicted_index[part] = np.frombuffer(p_raw, dtype="<i2")[take]
        if proba_raw is not None:
            probabilities[part] = np.frombuffer(proba_raw, dtype="<f4").reshape(n_rows, k)[take]
        if label_index is not None:
            label_index[part] = codes
        ids[part] = batches.decode_ids(ids_raw, n_rows) if isinstance(take, slice) else np.asarray(
            batches.decode_ids(ids_raw, n_rows), dtype=object
        )[take]
        at += size
    if n and np.any(np.diff(t_out) < 0):  # batches overlap in time: put the rows in time order
        order = np.argsort(t_out, kind="stable")
        X, t_out, predicted_index, ids = X[order], t_out[order], predicted_index[order], ids[order]
        label_index = label_index[order] if label_index is not None else None
        probabilities = probabilities[order] if probabilities is not None else None
    if limit is not None:
        X, t_out, predicted_index, ids = X[:limit], t_out[:limit], predicted_index[:limit], ids[:limit]
        label_index = label_index[:limit] if label_index is not None else None
        probabilities = probabilities[:limit] if probabilities is not None else None
    return ProductionWindow(
        X=X,
        predicted=classes[predicted_index] if k else predicted_index.astype(str),
        labels=classes[label_index] if label_index is not None else None,
        timestamps=batches.as_datetime64(t_out),
        request_ids=ids,
        probabilities=probabilities,
        predicted_index=predicted_index,
        label_index=label_index,
    )


def _labelled_by_batch(batch_ids: np.ndarray, rows: np.ndarray, codes: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{batch id: (rows in order, their label indices)}."""
    order = np.argsort(batch_ids.astype(np.int64) * (1 << 32) + rows)
    batch_ids, rows, codes = batch_ids[order], rows[order], codes[order]
    starts = np.flatnonzero(np.r_[True, batch_ids[1:] != batch_ids[:-1]]) if len(batch_ids) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(batch_ids)]
    return {int(batch_ids[a]): (rows[a:b], codes[a:b]) for a, b in zip(starts, ends)}


def prediction_counts(*, deployment: Deployment, since: datetime) -> tuple[int, datetime | None]:
    """(predictions with timestamp >= since, the latest prediction's time), from batch headers.

    Only batches that straddle `since` have their timestamp column read.
    """
    stored = PredictionBatch.objects.live().filter(deployment=deployment)
    last = stored.order_by("-t_max").values_list("t_max", flat=True).first()
    recent = stored.filter(t_max__gte=since)
    count = sum(recent.filter(t_min__gte=since).values_list("n_rows", flat=True))
    lo = batches.datetime_to_us(since)
    for raw in recent.filter(t_min__lt=since).values_list("timestamps_us", flat=True):  # always in the row
        count += int(np.count_nonzero(np.frombuffer(raw, dtype="<i8") >= lo))
    return count, last


# ---------------------------------------------------------------- maintenance job options


@lru_cache(maxsize=256)
def _kind_options(sha256: str, *, has_recipe: bool, has_reference: bool, has_evaluation_set: bool) -> tuple:
    """Cached by content: the answer depends only on the file (whose sha256 is its identity) and the flags, and
    the float16 check loads a converted session, which every page view would otherwise repeat."""
    from monitoring.services import blob_read
    from workers.applicability import kind_options

    return tuple(kind_options(
        onnx_bytes=blob_read(sha256), has_recipe=has_recipe, has_reference=has_reference,
        has_evaluation_set=has_evaluation_set,
    ))


@dataclass(frozen=True)
class JobOption:
    kind: str
    label: str
    applicable: bool
    reason: str


def job_options(*, version: ModelVersion) -> list[JobOption]:
    """Every maintenance job kind for this version: whether it applies to its graph and data, and why not."""
    deployment = version.deployment
    evaluation = deployment.evaluation_dataset
    options = _kind_options(
        version.sha256,
        has_recipe=bool(version.recipe_sha256),
        has_reference=deployment.reference_dataset_id is not None,
        has_evaluation_set=evaluation is not None and evaluation.has_labels,
    )
    labels = dict(MaintenanceJob.Kind.choices)
    return [JobOption(o.kind, labels[o.kind], o.applicable, o.reason) for o in options]


# ---------------------------------------------------------------- fair comparison for approval


@dataclass(frozen=True)
class ComparisonSource:
    """One source of labelled rows a candidate is compared on, as it stands now."""

    source: str  # VersionComparisonResult.Source
    window_key: str
    description: str
    dataset: Dataset | None = None
    window_days: int | None = None


def comparison_sources(*, deployment: Deployment) -> list[ComparisonSource]:
    """The labelled evaluation set (if any) and the labelled production window of the last
    evaluation_window_days days: where the approval page compares a candidate with the active version."""
    Source = VersionComparisonResult.Source
    sources = []
    evaluation = deployment.evaluation_dataset
    if evaluation is not None and evaluation.has_labels:
        sources.append(ComparisonSource(
            Source.EVALUATION_SET, f"evaluation_set:{evaluation.pk}", f"Evaluation set ({evaluation.name})",
            dataset=evaluation,
        ))
    days = deployment.evaluation_window_days
    sources.append(ComparisonSource(
        Source.PRODUCTION, f"production:{days}d", f"Labelled production, last {days} days", window_days=days,
    ))
    return sources


@dataclass(frozen=True)
class SourceComparison:
    source: str  # "Evaluation set (holdout)", "Labelled production, last 7 days"
    comparison: Comparison | None  # None while the first computation runs, or when it failed
    status: str  # VersionComparisonResult.Status: a stored comparison being recomputed is "queued" or "running"
    window_start: datetime | None = None
    window_end: datetime | None = None
    computed_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    error: str = ""

    @property
    def pending(self) -> bool:
        return self.status in (VersionComparisonResult.Status.QUEUED, VersionComparisonResult.Status.RUNNING)


@dataclass(frozen=True)
class VersionComparison:
    candidate: ModelVersion
    active: ModelVersion
    sources: list[SourceComparison]  # the ones with statistics to show, on at least one row
    waiting: list[SourceComparison]  # being computed, nothing to show yet
    failed: list[SourceComparison]  # the computation failed, nothing to show
    size_ratio: float
    latency_ratio: float | None  # candidate p50 / active p50, single row, from their latest evaluation-set runs
    throughput_ratio: float | None

    @property
    def computing_since(self) -> datetime | None:
        """When the oldest comparison still without statistics started (or was queued); None if none waits."""
        return min((s.started_at or s.queued_at for s in self.waiting), default=None)


def _latest_metrics(version: ModelVersion) -> dict:
    run = (
        EvaluationRun.objects.filter(version=version, source=EvaluationRun.Source.EVALUATION_SET, status="succeeded")
        .order_by("-measured_at").first()
    )
    return run.metrics if run else {}


def _ratio(a, b) -> float | None:
    return float(a) / float(b) if a and b else None


def version_comparison(
    *, candidate: ModelVersion, active: ModelVersion, stored: list[VersionComparisonResult]
) -> VersionComparison:
    """The approval page's evidence, from stored comparisons only (services.comparisons_request gives them):
    no model runs here. The statistics were computed by a worker (workers/comparison.py) on exactly the same
    rows for both versions."""
    views = [
        SourceComparison(
            row.description,
            Comparison.from_dict(row.statistics) if row.statistics else None,
            row.status, row.window_start, row.window_end, row.computed_at, row.queued_at, row.started_at, row.error,
        )
        for row in stored
    ]
    a, c = _latest_metrics(active), _latest_metrics(candidate)
    return VersionComparison(
        candidate=candidate, active=active,
        sources=[v for v in views if v.comparison is not None and v.comparison.n_rows],
        waiting=[v for v in views if v.comparison is None and v.pending],
        failed=[v for v in views if v.comparison is None and v.status == VersionComparisonResult.Status.FAILED],
        size_ratio=candidate.size_bytes / active.size_bytes,
        latency_ratio=_ratio(c.get("latency_p50_ms"), a.get("latency_p50_ms")),
        throughput_ratio=_ratio(c.get("throughput_rows_per_s"), a.get("throughput_rows_per_s")),
    )


@dataclass(frozen=True)
class VersionPoint:
    number: int
    status: str
    origin: str
    size_bytes: int
    f1_macro: float | None
    latency_p50_ms: float | None


def version_points(*, deployment: Deployment) -> list[VersionPoint]:
    """Every non-rejected version with its size and its latest evaluation-set F1 and latency: the Pareto chart."""
    points = []
    for version in deployment.versions.exclude(status=ModelVersion.Status.REJECTED).order_by("number"):
        metrics = _latest_metrics(version)
        points.append(VersionPoint(
            version.number, version.status, version.origin, version.size_bytes,
            metrics.get("f1_macro"), metrics.get("latency_p50_ms"),
        ))
    return points



# ---------------------------------------------------------------- drift


def reference_profile_for(*, dataset: Dataset, model_sha256: str) -> ReferenceProfile | None:
    return ReferenceProfile.objects.filter(dataset=dataset, model_sha256=model_sha256).first()


def drift_feature_series(
    *, deployment: Deployment, since: datetime | None = None, features: list[str] | None = None
) -> dict[str, dict[str, list]]:
    """{"feature": {"at": [...], "statistic": [...], "threshold": [...], "drifted": [...], "test": [...]}}, oldest
    first: each feature's drift statistic over the stored checks."""
    points = DriftFeaturePoint.objects.filter(deployment=deployment)
    if since is not None:
        points = points.filter(at__gte=since)
    if features is not None:
        points = points.filter(feature__in=features)
    series: dict[str, dict[str, list]] = {}
    rows = points.order_by("at").values_list("feature", "at", "statistic", "threshold", "drifted", "test")
    for feature, at, statistic, threshold, drifted, test in rows:
        s = series.setdefault(feature, {"at": [], "statistic": [], "threshold": [], "drifted": [], "test": []})
        for key, value in zip(("at", "statistic", "threshold", "drifted", "test"), (at, statistic, threshold, drifted, test)):
            s[key].append(value)
    return series


def accuracy_baseline(*, version: ModelVersion) -> tuple[float, int] | None:
    """(accuracy, rows) of the version's latest successful run on the evaluation set: the concept-drift baseline."""
    run = (
        EvaluationRun.objects.filter(
            version=version, source=EvaluationRun.Source.EVALUATION_SET, status=EvaluationRun.Status.SUCCEEDED
        )
        .order_by("-measured_at")
        .first()
    )
    if run is None or "accuracy" not in run.metrics or not run.n_rows:
        return None
    return float(run.metrics["accuracy"]), int(run.n_rows)


def deployments_with_pending_batches() -> list[int]:
    return list(
        PredictionBatch.objects.filter(state=PredictionBatch.State.PENDING).values_list("deployment_id", flat=True).distinct()
    )


def batch_for(*, deployment: Deployment, batch_id: int) -> PredictionBatch:
    """One of the deployment's batches, without its columns. Raises PredictionBatch.DoesNotExist."""
    return PredictionBatch.objects.defer(*_STORED_COLUMNS).get(deployment=deployment, pk=batch_id)


def deployments_due_for_drift(*, deployment_ids: list[int], now: datetime) -> list[int]:
    """Of these deployments, those whose own drift interval has passed since their last check (or that have
    none: then every beat is due)."""
    # One query for every deployment, not one per deployment: beat runs this on each tick.
    rows = (
        Deployment.objects.filter(pk__in=deployment_ids)
        .annotate(last_check=Max("drift_reports__created_at"))
        .values_list("pk", "drift_interval_minutes", "last_check")
    )
    return [
        pk for pk, interval, last in rows
        if not interval or last is None or now - last >= timedelta(minutes=interval)
    ]
