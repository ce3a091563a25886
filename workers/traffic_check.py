"""The dead man's switch (healthchecks' core idea): a served deployment that had traffic and went quiet raises
an alert; it resolves when predictions arrive again. The same for labels: a deployment that had labels arriving
and got none for its `labels_stopped_hours`. Run by the beat (workers.tasks.check_silent_deployments_task);
running it twice raises nothing twice (the alerts are keyed)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from monitoring import selectors, services
from monitoring.alert_keys import LABELS_STOPPED_KEY
from monitoring.models import Alert, Deployment

NO_PREDICTIONS_KEY = "traffic:no-predictions"


def check_silent_deployments(*, deployment_ids: list[int], now: datetime) -> list[int]:
    """Raise or resolve the no-predictions alert of each deployment; returns the ids found silent."""
    quiet_for = timedelta(hours=settings.ALERT_NO_PREDICTIONS_HOURS)
    last = selectors.last_predictions_received(deployment_ids=deployment_ids)
    silent = []
    for deployment in Deployment.objects.filter(pk__in=list(last)):
        received = last[deployment.pk]
        if now - received > quiet_for:
            silent.append(deployment.pk)
            hours = (now - received).total_seconds() / 3600
            services.alert_raise(
                deployment=deployment, kind=Alert.Kind.NO_PREDICTIONS, dedup_key=NO_PREDICTIONS_KEY,
                title=f"No predictions for {settings.ALERT_NO_PREDICTIONS_HOURS} h",
                message=f"The last batch arrived {hours:.1f} h ago ({received:%Y-%m-%d %H:%M} UTC); is the service "
                "still sending?",
            )
        else:
            services.alert_resolve_key(deployment=deployment, dedup_key=NO_PREDICTIONS_KEY)
    return silent


def check_labels_stopped(*, deployment_ids: list[int], now: datetime) -> list[int]:
    """Raise or resolve the labels-stopped alert of each deployment that ever had labels; returns those raised."""
    last = selectors.last_labels_received(deployment_ids=deployment_ids)
    stopped = []
    for deployment in Deployment.objects.filter(pk__in=list(last)):
        received = last[deployment.pk]
        limit = deployment.labels_stopped_hours
        if limit is not None and now - received > timedelta(hours=limit):
            stopped.append(deployment.pk)
            hours = (now - received).total_seconds() / 3600
            services.alert_raise(
                deployment=deployment, kind=Alert.Kind.LABELS_STOPPED, dedup_key=LABELS_STOPPED_KEY,
                title=f"No labels for {limit} h",
                message=f"The last label arrived {hours:.1f} h ago ({received:%Y-%m-%d %H:%M} UTC); accuracy on "
                "production traffic cannot be measured without them. Is the labelling job still running?",
                figures={"last_label_at": received.isoformat(), "hours_without": round(hours, 1), "limit_hours": limit},
            )
        else:
            services.alert_resolve_key(deployment=deployment, dedup_key=LABELS_STOPPED_KEY)
    return stopped
