"""Django admin: a window onto every table for operators of Watchkeeper itself.

Changes that the domain audits (approving versions, revoking tokens, queueing jobs) belong in the
dashboard or the API, which go through monitoring/services.py. Here those fields are read-only,
and the audit log cannot be touched at all.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from monitoring.models import (
    Alert,
    ApiToken,
    AuditEvent,
    Dataset,
    Deployment,
    DriftFeaturePoint,
    DriftReport,
    EvaluationRun,
    MaintenanceJob,
    Membership,
    MetricPoint,
    ModelVersion,
    PredictionBatch,
    ReferenceProfile,
    Team,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "team__name"]
    raw_id_fields = ["user"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "team", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "slug"]
    # The schema is fixed once versions and predictions depend on it.
    readonly_fields = ["feature_names", "class_labels", "created_at", "created_by"]
    raw_id_fields = ["reference_dataset", "evaluation_dataset"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "origin", "size_bytes", "created_at", "activated_at"]
    list_filter = ["status", "origin", "deployment"]
    search_fields = ["deployment__slug", "sha256"]
    # Status changes go through version_approve / version_reject / deployment_rollback, which audit them.
    readonly_fields = [
        field.name for field in ModelVersion._meta.fields if field.name not in {"notes"}
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "deployment", "kind", "n_rows", "has_labels", "created_at"]
    list_filter = ["kind", "deployment"]
    readonly_fields = ["sha256", "size_bytes", "n_rows", "has_labels", "created_at", "created_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# Prediction (the per-row index) is not registered: its primary key is (deployment, request_id), and
# Django 5.2's admin cannot show composite-key models. Its rows are visible through their batch.


@admin.register(PredictionBatch)
class PredictionBatchAdmin(admin.ModelAdmin):
    # The column blobs are binary and large: the admin shows their shape, never their bytes.
    list_display = ["id", "deployment", "source", "n_rows", "n_features", "t_min", "t_max", "received_at"]
    list_filter = ["deployment", "source"]
    search_fields = ["idempotency_key"]
    fields = ["deployment", "version", "source", "idempotency_key", "n_rows", "n_features", "t_min", "t_max", "result", "received_at"]
    readonly_fields = fields
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class MetricPointInline(admin.TabularInline):
    model = MetricPoint
    extra = 0
    fields = ["name", "value", "at"]
    readonly_fields = fields
    can_delete = False


@admin.register(EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    list_display = ["id", "deployment", "version", "source", "status", "n_rows", "measured_at"]
    list_filter = ["status", "source", "deployment"]
    raw_id_fields = ["version", "dataset", "job"]
    inlines = [MetricPointInline]


@admin.register(MetricPoint)
class MetricPointAdmin(admin.ModelAdmin):
    list_display = ["deployment", "name", "value", "at", "source"]
    list_filter = ["name", "source", "deployment"]
    raw_id_fields = ["version", "run"]
    show_full_result_count = False


@admin.register(DriftReport)
class DriftReportAdmin(admin.ModelAdmin):
    list_display = ["deployment", "window_start", "window_end", "n_current", "n_drifted", "drifted"]
    list_filter = ["drifted", "deployment"]
    raw_id_fields = ["reference_dataset", "profile"]


@admin.register(ReferenceProfile)
class ReferenceProfileAdmin(admin.ModelAdmin):
    list_display = ["dataset", "model_sha256", "sha256", "n_rows", "size_bytes", "created_at"]
    raw_id_fields = ["dataset"]


@admin.register(DriftFeaturePoint)
class DriftFeaturePointAdmin(admin.ModelAdmin):
    list_display = ["deployment", "feature", "at", "test", "statistic", "threshold", "drifted"]
    list_filter = ["drifted", "test", "deployment"]
    raw_id_fields = ["report"]
    show_full_result_count = False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["title", "deployment", "kind", "severity", "status", "occurrences", "last_seen_at"]
    list_filter = ["status", "severity", "kind", "deployment"]
    search_fields = ["title", "dedup_key"]
    raw_id_fields = ["drift_report", "evaluation_run"]


@admin.register(MaintenanceJob)
class MaintenanceJobAdmin(admin.ModelAdmin):
    list_display = ["id", "deployment", "kind", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status", "kind", "deployment"]
    raw_id_fields = ["source_version", "candidate"]
    readonly_fields = ["requested_by", "created_at", "started_at", "finished_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a job is queued with services.job_queue, which also enqueues the task


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "deployment", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["deployment"]
    search_fields = ["name", "prefix"]
    # Only the hash is stored; creating and revoking go through services (shown once, audited).
    readonly_fields = ["deployment", "prefix", "secret_sha256", "created_at", "created_by", "last_used_at", "revoked_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only (the ORM and a Postgres trigger refuse changes)."""

    list_display = ["at", "actor_label", "action", "deployment", "object_type", "object_id"]
    list_filter = ["action", "deployment"]
    search_fields = ["actor_label", "action", "object_id", "comment"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
