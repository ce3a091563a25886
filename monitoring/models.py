"""Watchkeeper's domain, kept in Postgres (the system of record).

Files (ONNX models, datasets, recipes) live in a content-addressed store under
MEDIA_ROOT (see monitoring/storage.py); rows keep their sha256 so a file is
verified before it is ever loaded.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Role(models.TextChoices):
    # Ordered: each role can do everything the roles before it can.
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    APPROVER = "approver", "Approver"


ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.APPROVER: 2}


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Approving stays with people unless the team's approvers let its service tokens hold the approver role.
    service_tokens_may_approve = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="membership_unique_team_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


class Deployment(models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="deployments")
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # The schema every version and every prediction must fit.
    feature_names = models.JSONField(default=list)
    class_labels = models.JSONField(default=list, help_text="Canonical class labels, as strings")
    # {"accuracy": 0.9, "f1_macro": 0.85}: a metric below its floor raises an alert.
    metric_thresholds = models.JSONField(default=dict, blank=True)
    drift_p_value = models.FloatField(default=0.05, help_text="Family-wise significance for the KS tests")
    drift_window_hours = models.PositiveIntegerField(default=24)
    # Drift settings over the defaults (monitoring.drift.DriftConfig): tests, thresholds, correction, per feature.
    drift_config = models.JSONField(default=dict, blank=True)
    # "The last N rows" windows: the newest N predictions within drift_window_hours; empty = the whole time window.
    drift_window_rows = models.PositiveIntegerField(null=True, blank=True)
    # Minutes between scheduled drift checks; empty = every beat (settings.DRIFT_INTERVAL_MINUTES).
    drift_interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    evaluation_window_days = models.PositiveIntegerField(default=7)
    # A deployment that had labels arriving and got none for this long raises "labels stopped"; labels often come
    # a day or two late, so the default waits two days. Empty: never.
    labels_stopped_hours = models.PositiveIntegerField(
        null=True, blank=True, default=48, help_text="Alert when no labels arrived for this many hours (empty: never)"
    )
    # Some sensors legitimately report NaN (a missing reading); most deployments want them refused at the door.
    allow_non_finite = models.BooleanField(
        default=False, help_text="Accept NaN and infinite feature values in production traffic"
    )
    # Four eyes: nobody ships a model alone. A team with a single approver turns it off (admin, audited).
    require_distinct_approver = models.BooleanField(
        default=True,
        help_text="A candidate must be approved by someone other than who uploaded it or queued the job that made it",
    )
    # Retention (monitoring/services/retention.py): stored predictions and drift reports older than this many
    # days are purged every night; empty keeps them for ever. The metric series is never purged, only thinned
    # to one evaluation per day past settings.METRIC_FULL_RESOLUTION_DAYS.
    retain_predictions_days = models.PositiveIntegerField(
        null=True, blank=True, default=90, help_text="Delete stored predictions older than this many days (empty: keep)"
    )
    retain_reports_days = models.PositiveIntegerField(
        null=True, blank=True, default=365, help_text="Delete drift reports older than this many days (empty: keep)"
    )
    # What the last purge did: {"batches": n, "rows": n, "reports": n, "evaluations": n, "blobs": n}.
    purged_at = models.DateTimeField(null=True, blank=True)
    last_purge = models.JSONField(default=dict, blank=True)
    reference_dataset = models.ForeignKey(
        "Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evaluation_dataset = models.ForeignKey(
        "Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def active_version(self) -> ModelVersion | None:
        return self.versions.filter(status=ModelVersion.Status.ACTIVE).first()

    def rollback_target(self) -> ModelVersion | None:
        """The version a rollback re-activates: the retired one most recently in production. The rollback
        service and the page that offers the button both ask here, so they cannot disagree."""
        return (
            self.versions.filter(status=ModelVersion.Status.RETIRED, activated_at__isnull=False)
            .order_by("-activated_at")
            .first()
        )


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"
        REJECTED = "rejected", "Rejected"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    # What made it: "upload", "quantize_int8", "retrain".
    origin = models.CharField(max_length=32, default="upload")
    notes = models.TextField(blank=True)

    # The file, content-addressed; read from the ONNX graph at upload.
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    input_name = models.CharField(max_length=200)
    input_shape = models.JSONField(default=list)
    output_names = models.JSONField(default=list)
    label_output = models.CharField(max_length=200)
    probability_output = models.CharField(max_length=200, blank=True)
    class_labels = models.JSONField(default=list)
    opset = models.PositiveIntegerField(default=0)
    producer = models.CharField(max_length=200, blank=True)

    # A skops-serialised scikit-learn estimator, for retraining (never pickle).
    recipe_sha256 = models.CharField(max_length=64, blank=True)
    # What Watchkeeper trained it on, when a job did (retrain, distillation): {"reference_dataset": id or None,
    # "production_start": iso, "production_end": iso, "n_rows": n}. Empty for an uploaded model. A comparison
    # never scores a version on these rows (workers/comparison.py).
    training_rows = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_by_job = models.ForeignKey(
        "MaintenanceJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    # Why it last left production: replaced by an approval, or rolled back (the reason given then). Kept apart
    # from the decision, which is what made it active.
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retired_reason = models.TextField(blank=True)
    # Free labels an operator gives a version ("baseline", "eu-2026-q4"), added and removed through
    # version_tag_add / version_tag_remove, which audit them. Sorted, unique.
    tags = models.JSONField(default=list, blank=True)
    # Ed25519 over the sha256 (monitoring/signing.py), by the key named here; a version without a valid
    # signature by the current key is never served (docs/serving.md).
    signature = models.CharField(max_length=128, blank=True, default="")
    signing_key_id = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["deployment", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "number"], name="version_unique_number"),
            # Rollout depends on this: at most one version serves a deployment at a time.
            models.UniqueConstraint(
                fields=["deployment"], condition=Q(status="active"), name="version_one_active_per_deployment"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment.slug} v{self.number}"

    @property
    def n_features(self) -> int:
        return int(self.input_shape[-1]) if self.input_shape else 0


class ServingPeriod(models.Model):
    """A stretch of time in which one version served its deployment; the health history is drawn from these.

    Opened when a version becomes active and closed when it leaves, so a version rolled back to has two.
    `ModelVersion.activated_at` only remembers the latest start.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="serving_periods")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="serving_periods")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment"], condition=Q(ended_at__isnull=True), name="serving_one_open_period_per_deployment"
            ),
        ]
        indexes = [models.Index(fields=["version", "started_at"], name="serving_version_idx")]


class ServingInstance(models.Model):
    """A serving process that polls GET /api/v1/deployments/{slug}/serving: the fleet on the deployment page.

    Written off the request path: each web process buffers its polls and upserts them all every
    SERVING_SEEN_FLUSH_SECONDS in one statement (services.serving_instance_seen)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="serving_instances")
    instance_id = models.CharField(max_length=200)
    # What it said it serves (X-Watchkeeper-Serving-Version), and what it was told to serve.
    version_reported = models.PositiveIntegerField(null=True, blank=True)
    version_told = models.PositiveIntegerField(null=True, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["instance_id"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "instance_id"], name="serving_instance_unique_id")
        ]

    def __str__(self) -> str:
        return f"{self.deployment.slug}/{self.instance_id}"


class ShadowReplay(models.Model):
    """A candidate run over recent production inputs, beside the active version's logged answers (workers/shadow.py).

    Queued when a candidate is registered; one row per candidate, computed once (a redelivered task does nothing).
    `results` holds the agreement, the shift in predicted classes, the CBPE estimate and, where labels have
    arrived, both versions' measured metrics on those rows; `window_*`, `n_rows` and `row_cap` say which rows."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="shadow_replays")
    candidate = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="shadow_replay")
    # The version serving when it was queued; the logged predictions compared are whatever the window holds.
    active = models.ForeignKey(ModelVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    n_rows = models.PositiveIntegerField(default=0)
    row_cap = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)


class Dataset(models.Model):
    class Kind(models.TextChoices):
        REFERENCE = "reference", "Reference"
        EVALUATION = "evaluation", "Evaluation (labelled)"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="datasets")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200)
    # An .npz with X (float32, n_rows × n_features) and, when labelled, y (strings).
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    n_rows = models.PositiveIntegerField()
    has_labels = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.deployment.slug}/{self.kind}/{self.name}"


class PredictionBatchQuerySet(models.QuerySet):
    def live(self) -> PredictionBatchQuerySet:
        """The batches whose rows count: all but the rejected ones, whose columns are gone, and those the
        retention purge is deleting."""
        return self.exclude(state__in=[PredictionBatch.State.REJECTED, PredictionBatch.State.EXPIRING])


class PredictionBatch(models.Model):
    """One accepted batch of production traffic, stored as columns (see README "Ingestion and storage").

    Each column is one raw little-endian numpy array in a bytea, so a window of a million rows is a
    few hundred memcpy-sized reads instead of a million JSON documents. The per-row facts that change
    or are looked up by id (the label, the request id) live in Prediction, the narrow index.
    """

    class Source(models.TextChoices):
        API = "api", "JSON API"
        UPLOAD = "upload", "File upload"

    class State(models.TextChoices):
        # A large batch, stored and counted in drift windows; its ids are not in the Prediction index yet
        # (monitoring/indexing.py). Small batches are indexed as they are stored.
        PENDING = "pending", "Pending index"
        INDEXED = "indexed", "Indexed"
        # The indexer found ids that another batch already holds: its columns were dropped, its errors kept.
        REJECTED = "rejected", "Rejected"
        # Past its deployment's retention and claimed by the purge, which deletes its index rows a chunk at a
        # time and then the batch: no window counts it from the moment it is claimed.
        EXPIRING = "expiring", "Expiring"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="prediction_batches")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The client's Idempotency-Key, or a sha256 of the batch's content when it sent none.
    idempotency_key = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    # db_default: a batch inserted by code that predates this column (a rolling deploy) wrote its index rows.
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_default=State.INDEXED)
    n_rows = models.PositiveIntegerField()
    n_features = models.PositiveIntegerField()
    # The batch's time range: a window reads only the batches that overlap it.
    t_min = models.DateTimeField()
    t_max = models.DateTimeField()
    timestamps_us = models.BinaryField(help_text="int64 microseconds since the Unix epoch, UTC, one per row")
    features = models.BinaryField(help_text="float32, n_rows × n_features, row-major")
    predicted = models.BinaryField(help_text="int16 index into deployment.class_labels, one per row")
    probabilities = models.BinaryField(null=True, help_text="float32, n_rows × n_classes; NaN where a row had none")
    request_ids = models.BinaryField(help_text="UTF-8 request ids joined by newlines")
    # A large batch keeps every column above except timestamps_us in the media store, as one .npz named by
    # this sha256 (batches.columns_npz), and they are empty here: see README, "Ingestion and storage".
    columns_sha256 = models.CharField(max_length=64, blank=True, default="", db_default="")
    # The answer given to the client, replayed verbatim to a retry with the same key.
    result = models.JSONField(default=dict)
    received_at = models.DateTimeField(default=timezone.now)
    # When its ids were indexed, or it was rejected; received_at to indexed_at is the index lag.
    indexed_at = models.DateTimeField(null=True, blank=True)

    objects = PredictionBatchQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["deployment", "idempotency_key"], name="batch_unique_idempotency_key")
        ]
        indexes = [
            # Windows: "this deployment's batches that overlap [start, end)".
            models.Index(fields=["deployment", "t_min", "t_max"], name="batch_window_idx"),
            # The indexer's queue: small, because batches leave it within seconds.
            models.Index(fields=["deployment", "id"], name="batch_pending_idx", condition=Q(state="pending")),
            # "This deployment's newest prediction" (the overview's last-prediction column): one probe, not a
            # maximum over every batch.
            models.Index(fields=["deployment", "t_max"], name="batch_newest_idx"),
            # The media-store collector and the retention purge: "does any batch still name this file?".
            # Partial: only large batches keep their columns in a file.
            models.Index(fields=["columns_sha256"], name="batch_columns_file_idx", condition=~Q(columns_sha256="")),
        ]

    def __str__(self) -> str:
        return f"{self.deployment.slug} batch {self.pk} ({self.n_rows} rows)"


class Prediction(models.Model):
    """The narrow per-row index of stored traffic: who, when, where in which batch, and the true label."""

    # No foreign-key constraints in the database (db_constraint=False): Postgres checks each one with a
    # trigger per row at commit, which was half the cost of storing a large batch. Rows are written only
    # by services.ingestion._batch_store, in the transaction that creates their batch, and deleted with it (the
    # ORM's CASCADE, or the raw deletes in bench/); the primary key below still holds.
    #
    # The primary key is (deployment, request_id), not a surrogate id: ids must be unique per deployment
    # anyway, and that one b-tree then serves both the uniqueness check and the label join. A surrogate
    # key cost a second b-tree insert per row, about a quarter of the index COPY (README, "Figures").
    # The Django admin cannot show composite-key models (5.2), so Prediction is not registered there.
    pk = models.CompositePrimaryKey("deployment", "request_id")
    deployment = models.ForeignKey(
        # db_index=False: the primary key (deployment, request_id) already leads with it.
        Deployment, on_delete=models.CASCADE, related_name="predictions", db_constraint=False, db_index=False
    )
    # The client's id, unique per deployment: labels arriving days later are joined on it.
    request_id = models.CharField(max_length=128)
    timestamp = models.DateTimeField()
    # db_index=False: nothing reads rows by batch except deleting a deployment (one scan); the b-tree cost
    # an insert per row at ingest.
    batch = models.ForeignKey(
        PredictionBatch, on_delete=models.CASCADE, related_name="rows", db_constraint=False, db_index=False
    )
    row = models.PositiveIntegerField(help_text="Offset of this prediction in its batch's columns")
    label_index = models.SmallIntegerField(null=True, blank=True, help_text="The true class: index into class_labels")
    labelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Labelled windows: "this deployment's labelled rows between t0 and t1". Partial, so rows
            # inserted without a label (all of them, at ingest) cost this index nothing.
            models.Index(
                fields=["deployment", "timestamp"], name="prediction_labelled_idx", condition=Q(label_index__isnull=False)
            ),
        ]

    @property
    def label(self) -> str | None:
        return None if self.label_index is None else str(self.deployment.class_labels[self.label_index])


class EvaluationRunQuerySet(models.QuerySet["EvaluationRun"]):
    def latest_succeeded(self) -> EvaluationRun | None:
        """The most recently measured successful run among these (filter by version and source first)."""
        return self.filter(status=EvaluationRun.Status.SUCCEEDED).order_by("-measured_at").first()


class EvaluationRun(models.Model):
    class Source(models.TextChoices):
        EVALUATION_SET = "evaluation_set", "Evaluation set"
        # The last deployment.evaluation_window_days (a week by default): what alerts go by.
        PRODUCTION = "production", "Labelled production window"
        # The last 24 hours: a drop shows here first, on fewer rows.
        PRODUCTION_DAY = "production_day", "Labelled production, last 24 h"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="evaluations")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="evaluations")
    source = models.CharField(max_length=32, choices=Source.choices)
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    n_rows = models.PositiveIntegerField(default=0)
    # accuracy, precision_macro, recall_macro, f1_macro, confusion_matrix, latency_*_ms, throughput_rps …
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    job = models.ForeignKey(
        "MaintenanceJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="evaluations"
    )
    # The moment the metrics describe: the window's end, or the run time for the evaluation set.
    measured_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = EvaluationRunQuerySet.as_manager()

    class Meta:
        ordering = ["-measured_at"]
        indexes = [
            # Health charts: "this deployment's runs over time".
            models.Index(fields=["deployment", "measured_at"], name="evaluation_series_idx"),
            # "A version's latest run on a source" (the versions table, the Pareto chart, headline runs): one
            # probe instead of a walk over a year of a deployment's runs (bench/pages.py).
            models.Index(fields=["version", "source", "measured_at"], name="evaluation_latest_idx"),
        ]


class VersionComparisonResult(models.Model):
    """The approval page's statistics for a candidate against the active version on one source of labelled rows.

    Computed on a worker (workers/comparison.py) and only read by the page: running two models over a
    million-row window and bootstrapping does not belong in a web request. One row per (active, candidate,
    window_key); a recomputation overwrites it.
    """

    class Source(models.TextChoices):
        EVALUATION_SET = "evaluation_set", "Evaluation set"
        PRODUCTION = "production", "Labelled production window"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="comparisons")
    active = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    candidate = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="comparisons")
    source = models.CharField(max_length=32, choices=Source.choices)
    # Which rows: "evaluation_set:<dataset id>" or "production:<days>d" (the window's length, ending at the run).
    window_key = models.CharField(max_length=64)
    description = models.CharField(max_length=300)  # "Evaluation set (holdout)", "Labelled production, last 7 days"
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    window_days = models.PositiveIntegerField(null=True, blank=True)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    n_rows = models.PositiveIntegerField(default=0)
    # monitoring.comparison.Comparison.as_dict(); kept while a recomputation runs, so the page still shows it.
    statistics = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["active", "candidate", "window_key"], name="comparison_unique_active_candidate_window"
            ),
        ]


class MetricPointQuerySet(models.QuerySet["MetricPoint"]):
    def bulk_create(self, objs, *args, **kwargs):
        """As Django's, with each point's copies of its run's fields set first (bulk_create skips save)."""
        objs = list(objs)
        for point in objs:
            point.copy_from_run()
        return super().bulk_create(objs, *args, **kwargs)


class MetricPoint(models.Model):
    """One number at one time: the series the health charts draw."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="metric_points")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="points")
    source = models.CharField(max_length=32, choices=EvaluationRun.Source.choices)
    name = models.CharField(max_length=64)
    value = models.FloatField()
    at = models.DateTimeField()
    # Copies of the run's, set on save (copy_from_run), so the health charts pick their points from one index
    # instead of joining a run per point (a year of a deployment's charts is 61,000 points; bench/pages.py):
    # from the scheduled evaluation (not a maintenance job's), and over which production window length.
    scheduled = models.BooleanField(default=True)
    window_length = models.DurationField(null=True, blank=True)

    objects = MetricPointQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["deployment", "name", "at"], name="metric_series_idx"),
            # The health charts and the overview's sparklines: "this deployment's scheduled points of these
            # metrics on this source between t0 and t1", answered from the index alone.
            models.Index(
                fields=["deployment", "source", "name", "at"], include=["value", "version", "window_length"],
                condition=Q(scheduled=True), name="metric_health_idx",
            ),
        ]

    def copy_from_run(self) -> None:
        run = self.run
        self.scheduled = run.job_id is None
        self.window_length = run.window_end - run.window_start if run.window_start and run.window_end else None

    def save(self, *args, **kwargs) -> None:
        self.copy_from_run()
        super().save(*args, **kwargs)


class DriftReport(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="drift_reports")
    reference_dataset = models.ForeignKey(Dataset, null=True, on_delete=models.SET_NULL, related_name="+")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    n_reference = models.PositiveIntegerField()
    n_current = models.PositiveIntegerField()
    # monitoring.drift.FeatureDrift as dicts (test, statistic, p_value, threshold, verdict, histograms), drifted
    # first, then by how much each moved.
    features = models.JSONField(default=list)
    n_drifted = models.PositiveIntegerField(default=0)
    share_drifted = models.FloatField(default=0.0)
    drifted = models.BooleanField(default=False)
    # Predicted-class shares: {"reference": {...}, "current": {...}, "statistic": .., "p_value": ..}
    prediction_drift = models.JSONField(default=dict, blank=True)
    # The domain classifier: {"auc", "threshold", "drifted", "ranked": [{"feature", "importance"}], ...}
    multivariate = models.JSONField(default=dict, blank=True)
    # Concept drift: {"labelled": PerformanceDrop, "estimated": EstimatedPerformance}, either may be absent.
    performance = models.JSONField(default=dict, blank=True)
    drift_share = models.FloatField(default=0.5)
    correction = models.CharField(max_length=16, default="bonferroni")
    profile = models.ForeignKey("ReferenceProfile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-window_end"]
        indexes = [models.Index(fields=["deployment", "window_end"], name="drift_series_idx")]
        constraints = [
            # The scheduled check is idempotent: one report per deployment per window.
            models.UniqueConstraint(
                fields=["deployment", "window_start", "window_end"], name="drift_unique_window"
            )
        ]


class ReferenceProfile(models.Model):
    """A reference dataset profiled for drift checks (monitoring.drift.ReferenceProfile), stored as a blob.

    Keyed by the model too: the profile holds the predictions of the version that was active when it was built.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="profiles")
    model_sha256 = models.CharField(max_length=64, blank=True)  # "" when no version was active
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    n_rows = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "model_sha256"], name="reference_profile_unique_model")
        ]


class DriftFeaturePoint(models.Model):
    """One feature's result in one drift report: the series behind the drift-over-time charts."""

    report = models.ForeignKey(DriftReport, on_delete=models.CASCADE, related_name="points")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    feature = models.CharField(max_length=200)
    at = models.DateTimeField()  # the window's end
    test = models.CharField(max_length=32)
    statistic = models.FloatField()
    p_value = models.FloatField(null=True)
    threshold = models.FloatField()
    moved = models.FloatField()
    drifted = models.BooleanField()

    class Meta:
        indexes = [
            # Drift-over-time charts: "this deployment's features between t0 and t1".
            models.Index(fields=["deployment", "at"], name="drift_feature_series_idx")
        ]


class AlertQuerySet(models.QuerySet["Alert"]):
    def unresolved(self) -> AlertQuerySet:
        """Open or acknowledged: someone still has to act. At most one per deployment and dedup key
        (the constraint alert_one_unresolved_per_key)."""
        return self.filter(status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED])


class Alert(models.Model):
    class Kind(models.TextChoices):
        METRIC_BELOW_THRESHOLD = "metric_below_threshold", "Metric below its floor"
        DATA_DRIFT = "data_drift", "Data drift"
        JOB_FAILED = "job_failed", "Maintenance job failed"
        BATCH_REJECTED = "batch_rejected", "Prediction batch rejected"
        PREDICTION_DRIFT = "prediction_drift", "Prediction shift"
        CONCEPT_DRIFT = "concept_drift", "Accuracy drop on labelled traffic"
        # Issue 12 (alert delivery); kept at the end so other kinds can be added above without conflicts.
        NO_PREDICTIONS = "no_predictions", "No predictions arriving"
        LABELS_STOPPED = "labels_stopped", "Labels stopped arriving"
        CHANNEL_DISABLED = "channel_disabled", "Notification channel disabled"
        CHECK_FAILING = "check_failing", "Scheduled check failing"
        CANDIDATE_WAITING = "candidate_waiting", "Candidate waiting for review"
        # Issue 14 (progressive rollout).
        ROLLOUT_GUARD = "rollout_guard", "Rollout guard breached"

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # Repeated checks update the one open alert with this key instead of piling up new ones.
    dedup_key = models.CharField(max_length=200)
    title = models.CharField(max_length=300)
    message = models.TextField(blank=True)
    drift_report = models.ForeignKey(DriftReport, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    evaluation_run = models.ForeignKey(
        EvaluationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The numbers it was raised on, latest check first: {"metric": "accuracy", "value": 0.58, "floor": 0.7, ...}.
    figures = models.JSONField(default=dict, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)  # first seen
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "dedup_key"],
                condition=Q(status__in=["open", "acknowledged"]),
                name="alert_one_unresolved_per_key",
            )
        ]


class MaintenanceJob(models.Model):
    class Kind(models.TextChoices):
        COMPRESS_INT8 = "compress_int8", "Compress: int8 dynamic quantization"
        RETRAIN = "retrain", "Retrain from recipe"
        COMPRESS_INT8_STATIC = "compress_int8_static", "Compress: int8 static quantization (QDQ)"
        COMPRESS_PRUNE = "compress_prune", "Compress: magnitude pruning"
        COMPRESS_LOW_RANK = "compress_low_rank", "Compress: low-rank factorisation (SVD)"
        COMPRESS_KMEANS = "compress_kmeans", "Compress: k-means weight sharing"
        COMPRESS_FLOAT16 = "compress_float16", "Compress: float16 weights"
        DISTILL = "distill", "Distil into a small student"
        FIND_SMALLER = "find_smaller", "Find a smaller model (accuracy-aware search)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="jobs")
    source_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)  # 0–100
    progress_message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    candidate = models.OneToOneField(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_by"
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written every few seconds by the process running the job; a running job whose heartbeat stops has lost
    # its worker, and the reaper (workers/jobs.py: jobs_reap) fails it instead of leaving it "running".
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # What the job found besides its candidate: the compression report, the search's Pareto front …
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The reaper: "running jobs whose heartbeat is old".
            models.Index(fields=["status", "heartbeat_at"], name="job_heartbeat_idx"),
        ]

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}


class ApiToken(models.Model):
    """A per-deployment ingestion token. Only its sha256 is kept; the secret is shown once."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The public part of the token ("wk_<prefix>_<secret>"), for lookup and display.
    prefix = models.CharField(max_length=16, unique=True)
    secret_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} (wk_{self.prefix}_…)"


class AuditEvent(models.Model):
    """Append-only: who did what, when, with the state before and after.

    Rows are never updated or deleted; on Postgres a trigger (migration 0002) enforces it.
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    # "alice", "worker", "token:ab12cd34": readable even without the user row.
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=64)  # "version.approve", "job.queue", …
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise RuntimeError("Audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("Audit events are append-only")


# The serving client's predict calls (latency histogram, calls, errors), one row per batch: the rollout guards'.
from monitoring.call_models import CallStats as CallStats  # noqa: E402

# Alert delivery (channels, routing, grouping, silences, the outbox): its own module, loaded with these models.
from monitoring.notification_models import AlertGroup as AlertGroup  # noqa: E402
from monitoring.notification_models import DeliveryAttempt as DeliveryAttempt  # noqa: E402
from monitoring.notification_models import DigestPreference as DigestPreference  # noqa: E402
from monitoring.notification_models import DigestSent as DigestSent  # noqa: E402
from monitoring.notification_models import Notification as Notification  # noqa: E402
from monitoring.notification_models import NotificationChannel as NotificationChannel  # noqa: E402
from monitoring.notification_models import RoutingRule as RoutingRule  # noqa: E402
from monitoring.notification_models import ScheduledCheckState as ScheduledCheckState  # noqa: E402
from monitoring.notification_models import Silence as Silence  # noqa: E402

# Progressive rollout (issue 14): plans, rollouts and their guard checks.
from monitoring.rollout_models import Rollout as Rollout  # noqa: E402
from monitoring.rollout_models import RolloutCheck as RolloutCheck  # noqa: E402
from monitoring.rollout_models import RolloutPlan as RolloutPlan  # noqa: E402

# Machine access (personal and service tokens for the management API): its own module too.
from monitoring.token_models import MachineToken as MachineToken  # noqa: E402
