"""Django admin: a window onto every table for operators of Watchkeeper itself.

Every change the domain audits goes through monitoring/services/, here too: memberships, the four-eyes
setting of a deployment, and the actions on alerts, jobs and tokens call the services, which write the
audit event. Everything else is read-only (approving versions, queueing jobs: the dashboard or the API),
and the audit log cannot be touched at all.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from monitoring import services
from monitoring.call_models import CallStats
from monitoring.models import (
    Alert,
    AlertGroup,
    ApiToken,
    AuditEvent,
    Dataset,
    DeliveryAttempt,
    Deployment,
    DigestPreference,
    DigestSent,
    DriftFeaturePoint,
    DriftReport,
    EvaluationRun,
    MachineToken,
    MaintenanceJob,
    Membership,
    MetricPoint,
    ModelVersion,
    Notification,
    NotificationChannel,
    PredictionBatch,
    ReferenceProfile,
    Rollout,
    RolloutCheck,
    RolloutPlan,
    RoutingRule,
    ScheduledCheckState,
    ServingInstance,
    ServingPeriod,
    ShadowReplay,
    Silence,
    Team,
    VersionComparisonResult,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never changed here: a change would skip the services and so the audit log."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _each(request: HttpRequest, admin_: admin.ModelAdmin, queryset: QuerySet, act: Callable, done: str) -> None:
    """Run a service on each selected row; a refusal is reported for its row and the others go on."""
    count = 0
    for obj in queryset:
        try:
            act(obj)
            count += 1
        except services.ServiceError as exc:
            admin_.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
    if count:
        admin_.message_user(request, f"{done}: {count}.", messages.SUCCESS)


class MembershipInline(admin.TabularInline):
    """Read-only here: roles change on the Membership page, through services.membership_set."""

    model = Membership
    extra = 0
    fields = ["user", "role"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Deleting a team would delete its deployments and memberships unaudited: empty it first.
        if obj is None:
            return False
        return not obj.memberships.exists() and not obj.deployments.exists()


class AuditedUserAdmin(UserAdmin):
    """Deleting a user removes their memberships through the service, so each removal is audited."""

    def delete_model(self, request: HttpRequest, obj) -> None:
        for membership in obj.memberships.select_related("team", "user"):
            services.membership_remove(membership=membership, by=request.user)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for user in queryset:
            self.delete_model(request, user)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), AuditedUserAdmin)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Roles decide who may approve, so every change is audited (services.membership_set / _remove)."""

    list_display = ["user", "team", "role"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "team__name"]
    raw_id_fields = ["user"]

    def get_readonly_fields(self, request: HttpRequest, obj: Membership | None = None) -> list[str]:
        return ["team", "user"] if obj is not None else []  # a different person or team is a new membership

    def save_model(self, request: HttpRequest, obj: Membership, form, change: bool) -> None:
        saved = services.membership_set(team=obj.team, user=obj.user, role=obj.role, by=request.user)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_remove(membership=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for membership in queryset.select_related("team", "user"):
            services.membership_remove(membership=membership, by=request.user)


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    """Only the four-eyes setting changes here (services.deployment_approval_configure, audited); the rest is
    set through the API and the dashboard."""

    list_display = ["name", "slug", "team", "require_distinct_approver", "created_at"]
    list_filter = ["team", "require_distinct_approver"]
    search_fields = ["name", "slug"]
    readonly_fields = [field.name for field in Deployment._meta.fields if field.name != "require_distinct_approver"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Deployment, form, change: bool) -> None:
        if "require_distinct_approver" in form.changed_data:
            services.deployment_approval_configure(
                deployment=obj, require_distinct_approver=obj.require_distinct_approver, by=request.user
            )


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    """Status changes go through version_approve / version_reject / deployment_rollback, which audit them."""

    list_display = ["__str__", "status", "origin", "size_bytes", "created_at", "activated_at"]
    list_filter = ["status", "origin", "deployment"]
    search_fields = ["deployment__slug", "sha256"]


@admin.register(ServingPeriod)
class ServingPeriodAdmin(ReadOnlyAdmin):
    """Written only by the version services, as a version starts and stops serving."""

    list_display = ["version", "started_at", "ended_at"]
    list_filter = ["deployment"]


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ["name", "deployment", "kind", "n_rows", "has_labels", "created_at"]
    list_filter = ["kind", "deployment"]


# Prediction (the per-row index) is not registered: its primary key is (deployment, request_id), and
# Django 5.2's admin cannot show composite-key models. Its rows are visible through their batch.


@admin.register(PredictionBatch)
class PredictionBatchAdmin(ReadOnlyAdmin):
    # The column blobs are binary and large: the admin shows their shape, never their bytes.
    list_display = ["id", "deployment", "source", "n_rows", "n_features", "t_min", "t_max", "received_at"]
    list_filter = ["deployment", "source"]
    search_fields = ["idempotency_key"]
    fields = ["deployment", "version", "source", "idempotency_key", "n_rows", "n_features", "t_min", "t_max", "result", "received_at"]
    readonly_fields = fields
    show_full_result_count = False


@admin.register(CallStats)
class CallStatsAdmin(ReadOnlyAdmin):
    # Written with a batch by ingestion (the client's timed calls); the histogram is binary, so only its counts show.
    list_display = ["id", "deployment", "version", "instance", "calls", "errors", "at"]
    list_filter = ["deployment"]
    fields = ["deployment", "version", "batch_id", "instance", "calls", "errors", "at"]
    readonly_fields = fields
    show_full_result_count = False


class MetricPointInline(admin.TabularInline):
    model = MetricPoint
    extra = 0
    fields = ["name", "value", "at"]
    readonly_fields = fields
    can_delete = False


# Measurements (evaluations, drift checks and their points, reference profiles) are history: read-only.


@admin.register(EvaluationRun)
class EvaluationRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "deployment", "version", "source", "status", "n_rows", "measured_at"]
    list_filter = ["status", "source", "deployment"]
    raw_id_fields = ["version", "dataset", "job"]
    inlines = [MetricPointInline]


@admin.register(MetricPoint)
class MetricPointAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "name", "value", "at", "source"]
    list_filter = ["name", "source", "deployment"]
    raw_id_fields = ["version", "run"]
    show_full_result_count = False


@admin.register(DriftReport)
class DriftReportAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "window_start", "window_end", "n_current", "n_drifted", "drifted"]
    list_filter = ["drifted", "deployment"]
    raw_id_fields = ["reference_dataset", "profile"]


@admin.register(ReferenceProfile)
class ReferenceProfileAdmin(ReadOnlyAdmin):
    list_display = ["dataset", "model_sha256", "sha256", "n_rows", "size_bytes", "created_at"]
    raw_id_fields = ["dataset"]


@admin.register(DriftFeaturePoint)
class DriftFeaturePointAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "feature", "at", "test", "statistic", "threshold", "drifted"]
    list_filter = ["drifted", "test", "deployment"]
    raw_id_fields = ["report"]
    show_full_result_count = False


@admin.register(VersionComparisonResult)
class VersionComparisonResultAdmin(ReadOnlyAdmin):
    """Computed by a worker for the approval page (workers/comparison.py); recomputed there, never edited."""

    list_display = ["id", "deployment", "active", "candidate", "source", "status"]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["title", "deployment", "kind", "severity", "status", "occurrences", "last_seen_at"]
    list_filter = ["status", "severity", "kind", "deployment"]
    search_fields = ["title", "dedup_key"]
    actions = ["acknowledge", "resolve"]

    @admin.action(description="Acknowledge the selected alerts", permissions=["view"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet) -> None:
        by = request.user
        _each(request, self, queryset, lambda a: services.alert_set_status(alert=a, status=Alert.Status.ACKNOWLEDGED, by=by), "Acknowledged")

    @admin.action(description="Resolve the selected alerts", permissions=["view"])
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> None:
        by = request.user
        _each(request, self, queryset, lambda a: services.alert_set_status(alert=a, status=Alert.Status.RESOLVED, by=by), "Resolved")


@admin.register(MaintenanceJob)
class MaintenanceJobAdmin(ReadOnlyAdmin):
    """A job is queued with services.job_queue (the dashboard or the API), which also enqueues its task."""

    list_display = ["id", "deployment", "kind", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status", "kind", "deployment"]
    actions = ["cancel"]

    @admin.action(description="Cancel the selected jobs", permissions=["view"])
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        by = request.user
        _each(request, self, queryset.select_related("deployment"), lambda job: services.job_cancel(job=job, by=by), "Cancelled")


@admin.register(MachineToken)
class MachineTokenAdmin(ReadOnlyAdmin):
    """Personal and service tokens for the management API: only the hash is stored; created in the dashboard or
    the API (shown once, audited), revoked here too."""

    list_display = ["name", "kind", "prefix", "user", "team", "role", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["kind", "team"]
    search_fields = ["name", "prefix", "user__username"]
    exclude = ["secret_sha256"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens", permissions=["view"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        by = request.user
        _each(request, self, queryset, lambda token: services.machine_token_revoke(token=token, by=by), "Revoked")


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Only the hash is stored; a token is created in the dashboard or the API (shown once, audited)."""

    list_display = ["name", "deployment", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["deployment"]
    search_fields = ["name", "prefix"]
    exclude = ["secret_sha256"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens", permissions=["view"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        by = request.user
        _each(request, self, queryset.select_related("deployment"), lambda token: services.token_revoke(token=token, by=by), "Revoked")


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


# Alert delivery (issue 12): shown for support, changed only on the team's alerting pages, which audit.
@admin.register(NotificationChannel)
class NotificationChannelAdmin(ReadOnlyAdmin):
    list_display = ["name", "team", "kind", "enabled", "consecutive_failures"]
    list_filter = ["kind", "enabled", "team"]
    exclude = ["secret_sealed"]  # the sealed signing secret or secret URL is never shown again


@admin.register(RoutingRule)
class RoutingRuleAdmin(ReadOnlyAdmin):
    list_display = ["name", "team", "deployment", "min_severity"]


@admin.register(Silence)
class SilenceAdmin(ReadOnlyAdmin):
    list_display = ["team", "deployment", "kind", "ends_at", "author"]


@admin.register(AlertGroup)
class AlertGroupAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "rule", "status"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["pk", "channel", "status", "attempts"]
    list_filter = ["status"]


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ["notification", "at", "outcome"]


# Progressive rollout (issue 14): read-only like the rest; plans and transitions go through the services.
@admin.register(RolloutPlan)
class RolloutPlanAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "watch_minutes", "auto_rollback", "updated_at"]


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "candidate", "state", "stage", "started_at", "ended_at"]
    list_filter = ["state"]


@admin.register(RolloutCheck)
class RolloutCheckAdmin(ReadOnlyAdmin):
    list_display = ["rollout", "stage", "guard", "verdict", "value", "at"]


@admin.register(ScheduledCheckState)
class ScheduledCheckStateAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "check_name", "consecutive_failures", "last_failed_at", "last_succeeded_at"]


@admin.register(DigestPreference)
class DigestPreferenceAdmin(ReadOnlyAdmin):
    list_display = ["user", "weekly_digest", "updated_at"]


@admin.register(DigestSent)
class DigestSentAdmin(ReadOnlyAdmin):
    list_display = ["user", "team", "week_start", "sent_at"]


# Serving (issue 13): what each instance polled and was told, and each candidate's shadow replay.
@admin.register(ServingInstance)
class ServingInstanceAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "instance_id", "version_told", "version_reported", "last_seen"]
    list_filter = ["deployment"]


@admin.register(ShadowReplay)
class ShadowReplayAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "candidate", "status", "n_rows", "computed_at"]
    list_filter = ["status"]
