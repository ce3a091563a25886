"""Request and response shapes of the JSON API, as they appear in /api/openapi.json."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Field, Schema

from monitoring.models import Dataset, MaintenanceJob

# ---------------------------------------------------------------- errors


class ErrorItem(Schema):
    row: int | None = Field(None, description="0-based index of the row in a batch (-1: the batch as a whole)")
    line: int | None = Field(None, description="1-based line of an uploaded CSV (the header is line 1)")
    field: str = Field("", description="The field or column at fault, e.g. 'features.f3'")
    message: str


class ErrorOut(Schema):
    """An RFC 9457 problem (served as application/problem+json)."""

    type: str = Field("about:blank", description="about:blank: the status says what kind of problem it is")
    title: str = Field(description="The HTTP status phrase, e.g. 'Unprocessable Content'")
    status: int = Field(description="The HTTP status code, repeated")
    detail: str = Field(description="What went wrong and what to do, for a person to read")
    errors: list[ErrorItem] = Field(default_factory=list, description="Per-row or per-field problems, when known")


# ---------------------------------------------------------------- deployments


class DeploymentIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    slug: str = Field("", max_length=100, description="Defaults to the name, slugified")
    team: str = Field(description="Slug of the team that will own the deployment; you need the operator role on it")
    description: str = ""
    feature_names: list[str] = Field(description="The input columns, in the order the model takes them")
    class_labels: list[str | int] = Field(description="The classes the model predicts; stored as strings")
    metric_thresholds: dict[str, float] = Field(
        default_factory=dict, description='Floors that raise an alert, e.g. {"accuracy": 0.9}'
    )
    allow_non_finite: bool = Field(False, description="Accept NaN and infinite feature values in production traffic")
    require_distinct_approver: bool = Field(
        True,
        description="A candidate must be approved by someone other than who uploaded it or queued the job that made "
        "it. Turn off only for a team with a single approver.",
    )


class DeploymentOut(Schema):
    slug: str
    name: str
    description: str
    team: str
    feature_names: list[str]
    class_labels: list[str]
    metric_thresholds: dict[str, float]
    drift_p_value: float
    allow_non_finite: bool
    require_distinct_approver: bool
    active_version: int | None
    reference_dataset: int | None = Field(description="Id of the current reference dataset")
    evaluation_dataset: int | None = Field(description="Id of the current evaluation dataset")
    retain_predictions_days: int | None = Field(description="Stored predictions are purged after this many days; null: never")
    retain_reports_days: int | None = Field(description="Drift reports are purged after this many days; null: never")
    created_at: datetime

    @staticmethod
    def resolve_team(obj) -> str:
        return obj.team.slug

    @staticmethod
    def resolve_active_version(obj) -> int | None:
        active = obj.active_version()
        return active.number if active else None

    @staticmethod
    def resolve_reference_dataset(obj) -> int | None:
        return obj.reference_dataset_id

    @staticmethod
    def resolve_evaluation_dataset(obj) -> int | None:
        return obj.evaluation_dataset_id


# ---------------------------------------------------------------- versions


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


class VersionOut(Schema):
    number: int
    status: Literal["candidate", "active", "retired", "rejected"]
    origin: str
    notes: str
    parent: int | None = Field(description="Number of the version this one was made from")
    sha256: str
    size_bytes: int
    input_name: str
    n_features: int
    output_names: list[str]
    class_labels: list[str]
    opset: int
    producer: str
    has_recipe: bool = Field(description="Whether a skops training recipe was uploaded, so it can be retrained")
    created_at: datetime
    created_by: str | None
    activated_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    decision_comment: str
    tags: list[str] = Field(description="Labels operators gave the version (sorted)")

    @staticmethod
    def resolve_parent(obj) -> int | None:
        return obj.parent.number if obj.parent_id else None

    @staticmethod
    def resolve_has_recipe(obj) -> bool:
        return bool(obj.recipe_sha256)

    @staticmethod
    def resolve_created_by(obj) -> str | None:
        return _username(obj.created_by)

    @staticmethod
    def resolve_decided_by(obj) -> str | None:
        return _username(obj.decided_by)


class DecisionIn(Schema):
    comment: str = Field(
        "", max_length=5000,
        description="Why (required, not blank: 422 otherwise); shown on the version's page and kept in the audit log",
    )


# ---------------------------------------------------------------- datasets


class DatasetOut(Schema):
    id: int
    kind: Literal["reference", "evaluation"]
    name: str
    sha256: str
    size_bytes: int
    n_rows: int
    has_labels: bool
    current: bool = Field(description="Whether the deployment uses this dataset now")
    created_at: datetime
    created_by: str | None

    @staticmethod
    def resolve_current(obj) -> bool:
        deployment = obj.deployment
        if obj.kind == Dataset.Kind.REFERENCE:
            return deployment.reference_dataset_id == obj.pk
        return deployment.evaluation_dataset_id == obj.pk

    @staticmethod
    def resolve_created_by(obj) -> str | None:
        return _username(obj.created_by)


# ---------------------------------------------------------------- tokens


class TokenIn(Schema):
    name: str = Field("", max_length=100, description="What the token is for, e.g. 'scoring service'")


class TokenOut(Schema):
    prefix: str = Field(description="The public part: the token reads wk_<prefix>_<secret>")
    name: str
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute")
    revoked_at: datetime | None

    @staticmethod
    def resolve_created_by(obj) -> str | None:
        return _username(obj.created_by)


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The whole token. It is shown only this once; only its hash is stored.")


# ---------------------------------------------------------------- ingestion
# These document the bodies; the endpoints parse them with orjson and the services validate every row,
# so that an error names the row and field (see dashboard/api/ingestion.py).


class PredictionIn(Schema):
    id: str = Field(max_length=128, description="Your request id; a retried batch is stored once")
    timestamp: datetime = Field(description="When the prediction was made (ISO 8601; naive means UTC)")
    features: dict[str, float] | list[float] = Field(
        description="By feature name, or a list in the deployment's feature order (faster). Finite numbers "
        "unless the deployment allows NaN and infinity."
    )
    predicted_label: str = Field(description="One of the deployment's class labels")
    probabilities: list[float] | None = Field(None, description="One per class, in class_labels order")


class PredictionBatchIn(Schema):
    predictions: list[PredictionIn]
    version: int | None = Field(
        None, description="The number of the version that made these predictions (a serving client sends it); "
        "must be a version of this deployment. Without it, the version active when the batch arrives.",
    )
    latency_us: list[float] | None = Field(
        None, description="The serving client's latency of each predict call timed in this batch (µs, session run)")
    calls: int | None = Field(None, description="Predict calls this batch reports, failed ones included")
    errors: int | None = Field(None, description="Failed predict calls (an exception); they logged no rows")
    instance: str | None = Field(None, description="The serving instance that made them")


class IngestOut(Schema):
    batch_id: int | None = Field(description="The stored batch; null for a report of failed calls without rows")
    received: int
    created: int
    replayed: bool = Field(description="True when this is the stored answer to an earlier request with the same key")
    status: str = Field(
        description="indexed: stored, and labels can be joined to it (every batch up to 10,000 rows). pending: a "
        "larger batch, stored and counted in drift windows, whose ids the indexer checks and indexes within "
        "seconds. See GET /deployments/{slug}/batches/{batch_id}."
    )


class BatchOut(Schema):
    batch_id: int = Field(alias="pk")
    source: str
    status: str = Field(
        alias="state",
        description="pending, indexed, or rejected (an id was already stored by another batch, or its stored file "
        "could not be read; nothing of it is kept)",
    )
    n_rows: int
    received_at: datetime
    indexed_at: datetime | None
    t_min: datetime = Field(description="The earliest prediction timestamp in the batch")
    t_max: datetime
    message: str = Field("", description="Why the batch was rejected")
    errors: list[dict] = Field(default_factory=list, description="The rows at fault (at most 100), when rejected")

    @staticmethod
    def resolve_message(batch) -> str:
        return batch.result.get("message", "")

    @staticmethod
    def resolve_errors(batch) -> list[dict]:
        return batch.result.get("errors", [])


class LabelIn(Schema):
    id: str = Field(description="The id of a stored prediction")
    label: str = Field(description="The true class")


class LabelBatchIn(Schema):
    labels: list[LabelIn]


class LabelsOut(Schema):
    received: int
    updated: int


# ---------------------------------------------------------------- alerts and jobs


class AlertOut(Schema):
    id: int
    kind: str
    severity: Literal["info", "warning", "critical"]
    status: Literal["open", "acknowledged", "resolved"]
    title: str
    message: str
    occurrences: int
    created_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None


JobKind = Literal[tuple(MaintenanceJob.Kind.values)]  # type: ignore[valid-type]


class JobIn(Schema):
    kind: JobKind  # type: ignore[valid-type]
    source_version: int | None = Field(None, description="Version number to start from; defaults to the active one")
    params: dict = Field(default_factory=dict)


class JobOut(Schema):
    id: int
    deployment: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: int = Field(description="0 to 100")
    progress_message: str
    error: str
    params: dict
    source_version: int
    candidate_version: int | None = Field(description="The version the job produced, once it has")
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None = Field(description="Last sign of life from the worker running the job")
    result: dict = Field(description="What the job found: compression report, the search's Pareto front …")

    @staticmethod
    def resolve_deployment(obj) -> str:
        return obj.deployment.slug

    @staticmethod
    def resolve_source_version(obj) -> int:
        return obj.source_version.number

    @staticmethod
    def resolve_candidate_version(obj) -> int | None:
        return obj.candidate.number if obj.candidate_id else None

    @staticmethod
    def resolve_requested_by(obj) -> str | None:
        return _username(obj.requested_by)


class RetentionIn(Schema):
    retain_predictions_days: int | None = Field(
        description="Days stored predictions are kept (at least the evaluation window, at most 3650); null: for ever"
    )
    retain_reports_days: int | None = Field(description="Days drift reports are kept (1 to 3650); null: for ever")


class RetentionOut(Schema):
    retain_predictions_days: int | None
    retain_reports_days: int | None
    full_resolution_days: int = Field(description="Evaluations older than this are thinned to one per day, never deleted")
    stored_batches: int
    stored_rows: int
    oldest_prediction_at: datetime | None
    oldest_report_at: datetime | None
    oldest_evaluation_at: datetime | None
    expiring_batches: int = Field(description="Batches a purge has claimed and not finished deleting")
    next_purge_at: datetime
    purged_at: datetime | None = Field(description="When the last purge ran")
    last_purge: dict = Field(description='What it deleted: {"batches", "rows", "reports", "evaluations", "blobs"}')

    @staticmethod
    def of(summary) -> RetentionOut:
        return RetentionOut(
            retain_predictions_days=summary.predictions_days, retain_reports_days=summary.reports_days,
            **{name: getattr(summary, name) for name in (
                "full_resolution_days", "stored_batches", "stored_rows", "oldest_prediction_at", "oldest_report_at",
                "oldest_evaluation_at", "expiring_batches", "next_purge_at", "purged_at", "last_purge",
            )},
        )
