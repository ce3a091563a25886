"""The approval page's evidence: stored comparisons of a candidate against the active version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from django.db.models import OuterRef, Subquery

from monitoring.comparison import Comparison
from monitoring.models import (
    Dataset,
    Deployment,
    EvaluationRun,
    ModelVersion,
    VersionComparisonResult,
)


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


def trained_until(versions: list[ModelVersion]) -> datetime | None:
    """The end of the latest production rows any of these versions was trained on (None: none was trained on
    production traffic here). Rows before it are not fair evidence for a comparison between them."""
    ends = [
        datetime.fromisoformat(v.training_rows["production_end"])
        for v in versions
        if v.training_rows.get("production_end")
    ]
    return max(ends, default=None)


def trained_on_dataset(versions: list[ModelVersion], dataset: Dataset | None) -> list[int]:
    """The numbers of the versions that were trained on `dataset` (e.g. an evaluation set that is also the
    reference set a retrain learnt from)."""
    if dataset is None:
        return []
    return [v.number for v in versions if v.training_rows.get("reference_dataset") in (dataset.pk,)]


def describe_training(version: ModelVersion, tz: tzinfo = UTC) -> str:
    """Which rows a job trained `version` on, in words, with times in `tz` (the reader's zone); "" for a model
    trained elsewhere (uploaded)."""
    rows = version.training_rows
    if not rows:
        return ""
    parts = []
    if rows.get("reference_dataset"):
        dataset = Dataset.objects.filter(pk=rows["reference_dataset"]).first()
        parts.append(f"the reference set ({dataset.name if dataset else 'since deleted'})")
    if rows.get("production_end"):
        start, end = (datetime.fromisoformat(rows[key]) for key in ("production_start", "production_end"))
        # Stored as ISO with an offset (UTC); an old naive one is UTC too.
        start, end = ((t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(tz) for t in (start, end))
        parts.append(f"production traffic from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} {end:%Z}")
    return f"v{version.number} was trained on {' and '.join(parts)}, {rows.get('n_rows', 0):,} rows in all"


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
    # Versions trained on these rows: the difference is in-sample, and the page calls nothing significant.
    trained_on: tuple[int, ...] = ()

    @property
    def fair(self) -> bool:
        return not self.trained_on

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
            tuple(trained_on_dataset([active, candidate], row.dataset)),
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
    """Every non-rejected version with its size and its latest evaluation-set F1 and latency: the Pareto chart.
    Two queries however many versions: each one's latest run id as a subquery, then those runs' metrics."""
    latest = Subquery(
        EvaluationRun.objects.filter(
            version_id=OuterRef("pk"), source=EvaluationRun.Source.EVALUATION_SET, status=EvaluationRun.Status.SUCCEEDED
        ).order_by("-measured_at", "-pk").values("pk")[:1]
    )
    versions = list(
        deployment.versions.exclude(status=ModelVersion.Status.REJECTED).annotate(latest_run=latest).order_by("number")
    )
    metrics = dict(
        EvaluationRun.objects.filter(pk__in=[v.latest_run for v in versions if v.latest_run]).values_list("pk", "metrics")
    )
    points = []
    for version in versions:
        m = metrics.get(version.latest_run) or {}
        points.append(VersionPoint(
            version.number, version.status, version.origin, version.size_bytes, m.get("f1_macro"), m.get("latency_p50_ms"),
        ))
    return points
