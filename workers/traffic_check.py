"""The dead man's switch (healthchecks' core idea): a served deployment that had traffic and went quiet raises
an alert; it resolves when predictions arrive again. Run by the beat (workers.tasks.check_silent_deployments_task)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from monitoring import selectors, services
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
