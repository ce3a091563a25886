"""Reads: plain data for views, the API and chart builders.

One module per subdomain; the public names are re-exported here, so `selectors.deployment_summary(...)` works
as before. Reads never import writes (monitoring/services/); stored bytes are read through monitoring/blobs.py."""

from monitoring.selectors.access import deployments_visible_to, role_allows, role_for, team_role_for
from monitoring.selectors.comparisons import (
    ComparisonSource,
    SourceComparison,
    VersionComparison,
    VersionPoint,
    comparison_sources,
    version_comparison,
    version_points,
)
from monitoring.selectors.deployments import (
    DeploymentSummary,
    Health,
    VersionRow,
    alerts_for,
    deployment_summary,
    metric_series,
    per_class_rows,
    versions_list,
    versions_with_metrics,
)
from monitoring.selectors.drift import (
    accuracy_baseline,
    deployments_due_for_drift,
    drift_feature_series,
    drift_share_series,
    latest_drift_report,
    reference_profile_for,
)
from monitoring.selectors.jobs import JobOption, job_options, jobs_for
from monitoring.selectors.notifications import (
    active_silences_matching,
    alert_groups_of,
    alert_notifications,
    channel_deliveries,
    channels_for,
    last_predictions_received,
    notifications_due_ids,
    rules_for,
    silences_for_team,
)
from monitoring.selectors.traffic import (
    ProductionWindow,
    batch_for,
    deployments_with_pending_batches,
    prediction_counts,
    production_window,
    stored_columns,
)

__all__ = [
    "ComparisonSource",
    "DeploymentSummary",
    "Health",
    "JobOption",
    "ProductionWindow",
    "SourceComparison",
    "VersionComparison",
    "VersionPoint",
    "VersionRow",
    "accuracy_baseline",
    "active_silences_matching",
    "alert_groups_of",
    "alert_notifications",
    "alerts_for",
    "batch_for",
    "channel_deliveries",
    "channels_for",
    "comparison_sources",
    "deployment_summary",
    "deployments_due_for_drift",
    "deployments_visible_to",
    "deployments_with_pending_batches",
    "drift_feature_series",
    "drift_share_series",
    "job_options",
    "jobs_for",
    "last_predictions_received",
    "latest_drift_report",
    "metric_series",
    "notifications_due_ids",
    "per_class_rows",
    "prediction_counts",
    "production_window",
    "reference_profile_for",
    "role_allows",
    "role_for",
    "rules_for",
    "silences_for_team",
    "stored_columns",
    "team_role_for",
    "version_comparison",
    "version_points",
    "versions_list",
    "versions_with_metrics",
]
