"""Reads: plain data for views, the API and chart builders.

One module per subdomain; the public names are re-exported here, so `selectors.deployment_summary(...)` works
as before. Reads never import writes (monitoring/services/); stored bytes are read through monitoring/blobs.py."""

from monitoring.selectors.access import deployments_visible_to, role_allows, role_for, team_role_for, teams_where
from monitoring.selectors.comparisons import (
    ComparisonSource,
    SourceComparison,
    VersionComparison,
    VersionPoint,
    comparison_sources,
    describe_training,
    trained_on_dataset,
    trained_until,
    version_comparison,
    version_points,
)
from monitoring.selectors.deployments import (
    DeploymentSummary,
    Health,
    VersionRow,
    alerts_for,
    deployment_summary,
    describe_rows,
    headline_run,
    per_class_rows,
    serving_metric_series,
    serving_periods,
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
    "alerts_for",
    "batch_for",
    "comparison_sources",
    "deployment_summary",
    "deployments_due_for_drift",
    "deployments_visible_to",
    "deployments_with_pending_batches",
    "describe_rows",
    "describe_training",
    "drift_feature_series",
    "drift_share_series",
    "headline_run",
    "job_options",
    "jobs_for",
    "latest_drift_report",
    "per_class_rows",
    "prediction_counts",
    "production_window",
    "reference_profile_for",
    "role_allows",
    "role_for",
    "serving_metric_series",
    "serving_periods",
    "stored_columns",
    "team_role_for",
    "teams_where",
    "trained_on_dataset",
    "trained_until",
    "version_comparison",
    "version_points",
    "versions_list",
    "versions_with_metrics",
]
