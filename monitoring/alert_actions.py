"""What to do about an alert: the evidence to read, and the maintenance job that addresses it, one click away.

Links only; the job form they open is prefilled (?job=<kind>#jobs) and still asks before queuing anything.
The pages show them, and notifications carry the first one (absolute, services.notifications._alert_item).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from monitoring.models import Alert, MaintenanceJob


@dataclass(frozen=True)
class NextAction:
    label: str
    url: str


def _retrain(alert: Alert) -> NextAction:
    url = reverse("deployment", args=[alert.deployment.slug]) + f"?job={MaintenanceJob.Kind.RETRAIN}#jobs"
    return NextAction("Retrain on recent labelled traffic", url)


def next_actions(alert: Alert) -> list[NextAction]:
    slug = alert.deployment.slug
    report = (
        [NextAction("Open the drift report", reverse("drift-report", args=[slug, alert.drift_report_id]))]
        if alert.drift_report_id
        else []
    )
    Kind = Alert.Kind
    if alert.kind in (Kind.DATA_DRIFT, Kind.CONCEPT_DRIFT):
        return [*report, _retrain(alert)]
    if alert.kind == Kind.PREDICTION_DRIFT:
        return report or [NextAction("See the health chart", reverse("deployment", args=[slug]) + "#health")]
    if alert.kind == Kind.METRIC_BELOW_THRESHOLD:
        window = "?window=day" if (alert.figures or {}).get("source") == "production_day" else ""
        return [NextAction("See the health chart", reverse("deployment", args=[slug]) + window + "#health"), _retrain(alert)]
    if alert.kind == Kind.JOB_FAILED:
        return [NextAction("See the job and its error", reverse("deployment", args=[slug]) + "#jobs")]
    if alert.kind == Kind.CANDIDATE_WAITING and (alert.figures or {}).get("version") is not None:
        number = alert.figures["version"]
        return [NextAction(f"Review v{number}", reverse("version-compare", args=[slug, number]))]
    if alert.kind == Kind.CHECK_FAILING:
        page = "deployment-drift" if (alert.figures or {}).get("check") == "drift" else "deployment-settings"
        return [NextAction("Check the settings the check uses", reverse(page, args=[slug]))]
    if alert.kind in (Kind.NO_PREDICTIONS, Kind.LABELS_STOPPED):
        return [NextAction("See the traffic on the health chart", reverse("deployment", args=[slug]) + "#health")]
    if alert.kind == Kind.CHANNEL_DISABLED:
        return [NextAction("Fix the channel", reverse("team-alerting", args=[alert.deployment.team.slug]))]
    return report or [NextAction("Open the deployment", reverse("deployment", args=[slug]))]
