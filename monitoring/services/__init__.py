"""Every write to Watchkeeper's domain goes through a function here.

Views, API endpoints, commands and tasks parse their input, call one service,
and render. Each service runs in a transaction and writes its audit record in it.

One module per subdomain; the public names are re-exported here, so `services.version_register(...)`
works as before. A test that patches a module constant patches it in the module that reads it."""

from monitoring.blobs import blob_read, dataset_load
from monitoring.services.access import (
    TOKEN_PREFIX,
    membership_remove,
    membership_set,
    token_authenticate,
    token_create,
    token_revoke,
    user_create,
)
from monitoring.services.alerts import alert_raise, alert_resolve_key, alert_set_status
from monitoring.services.audit import audit_record
from monitoring.services.blobs import BLOB_GRACE, blob_put, storage_collect_garbage
from monitoring.services.channels import (
    channel_create,
    channel_delete,
    channel_update,
    routing_rule_create,
    routing_rule_delete,
    silence_create,
    silence_expire,
)
from monitoring.services.comparisons import (
    COMPARISON_LOST_AFTER,
    comparison_complete,
    comparison_fail,
    comparisons_request,
)
from monitoring.services.datasets import dataset_register, dataset_to_bytes, dataset_upload
from monitoring.services.deployments import (
    FLOOR_METRICS,
    deployment_approval_configure,
    deployment_create,
    deployment_drift_configure,
    deployment_thresholds_configure,
    team_get_or_create,
)
from monitoring.services.drift import drift_report_record, reference_profile_store
from monitoring.services.errors import Conflict, NotFound, NotPermitted, ServiceError, TooLarge, ValidationFailed
from monitoring.services.evaluation import evaluation_complete, evaluation_fail, evaluation_start
from monitoring.services.ingestion import (
    INDEX_IN_REQUEST_UP_TO,
    IngestResult,
    LabelResult,
    batches_index,
    labels_ingest,
    labels_upload,
    predictions_ingest,
    predictions_upload,
)
from monitoring.services.jobs import (
    job_cancel,
    job_candidate_register,
    job_fail,
    job_heartbeat,
    job_progress,
    job_queue,
    job_result_record,
    job_start,
    job_succeed,
)
from monitoring.services.notifications import (
    AckResult,
    Recorded,
    alert_group_acknowledge,
    alert_group_flush,
    alert_groups_flush_due,
    alerts_route_open,
    channel_test,
    notification_claim,
    notification_record,
    notifications_requeue_expired,
)
from monitoring.services.serving import serving_changed, serving_instance_seen, version_sign, versions_sign
from monitoring.services.shadow import (
    shadow_replay_claim,
    shadow_replay_complete,
    shadow_replay_fail,
    shadow_replay_request,
)
from monitoring.services.versions import (
    deployment_create_from_model,
    deployment_rollback,
    version_approve,
    version_register,
    version_reject,
)

__all__ = [
    "BLOB_GRACE",
    "COMPARISON_LOST_AFTER",
    "FLOOR_METRICS",
    "INDEX_IN_REQUEST_UP_TO",
    "TOKEN_PREFIX",
    "AckResult",
    "Conflict",
    "IngestResult",
    "LabelResult",
    "NotFound",
    "NotPermitted",
    "Recorded",
    "ServiceError",
    "TooLarge",
    "ValidationFailed",
    "alert_group_acknowledge",
    "alert_group_flush",
    "alert_groups_flush_due",
    "alert_raise",
    "alert_resolve_key",
    "alert_set_status",
    "alerts_route_open",
    "audit_record",
    "batches_index",
    "blob_put",
    "blob_read",
    "channel_create",
    "channel_delete",
    "channel_test",
    "channel_update",
    "comparison_complete",
    "comparison_fail",
    "comparisons_request",
    "dataset_load",
    "dataset_register",
    "dataset_to_bytes",
    "dataset_upload",
    "deployment_approval_configure",
    "deployment_create",
    "deployment_create_from_model",
    "deployment_drift_configure",
    "deployment_rollback",
    "deployment_thresholds_configure",
    "drift_report_record",
    "evaluation_complete",
    "evaluation_fail",
    "evaluation_start",
    "job_cancel",
    "job_candidate_register",
    "job_fail",
    "job_heartbeat",
    "job_progress",
    "job_queue",
    "job_result_record",
    "job_start",
    "job_succeed",
    "labels_ingest",
    "labels_upload",
    "membership_remove",
    "membership_set",
    "notification_claim",
    "notification_record",
    "notifications_requeue_expired",
    "predictions_ingest",
    "predictions_upload",
    "reference_profile_store",
    "routing_rule_create",
    "routing_rule_delete",
    "serving_changed",
    "serving_instance_seen",
    "shadow_replay_claim",
    "shadow_replay_complete",
    "shadow_replay_fail",
    "shadow_replay_request",
    "silence_create",
    "silence_expire",
    "storage_collect_garbage",
    "team_get_or_create",
    "token_authenticate",
    "token_create",
    "token_revoke",
    "user_create",
    "version_approve",
    "version_register",
    "version_reject",
    "version_sign",
    "versions_sign",
]
