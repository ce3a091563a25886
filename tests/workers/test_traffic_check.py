"""The dead man's switch: a deployment that had traffic and went quiet raises an alert, resolved when it resumes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import services
from monitoring.models import Alert, PredictionBatch
from tests.conftest import FEATURES
from workers.traffic_check import check_silent_deployments

pytestmark = pytest.mark.django_db


def _send(deployment):
    row = {"id": f"r-{timezone.now().timestamp()}", "timestamp": "2025-03-01T12:00:00Z",
           "features": [0.5] * len(FEATURES), "predicted_label": "1"}
    services.predictions_ingest(deployment=deployment, rows=[row])


def test_a_deployment_that_went_quiet_raises_and_resumes_resolves(deployment, settings):
    settings.ALERT_NO_PREDICTIONS_HOURS = 6
    now = timezone.now()
    assert check_silent_deployments(deployment_ids=[deployment.pk], now=now) == []  # never had traffic: nothing
    _send(deployment)
    PredictionBatch.objects.update(received_at=now - timedelta(hours=7))
    assert check_silent_deployments(deployment_ids=[deployment.pk], now=now) == [deployment.pk]
    alert = Alert.objects.get(kind=Alert.Kind.NO_PREDICTIONS)
    assert alert.status == "open" and "6 h" in alert.title
    _send(deployment)
    assert check_silent_deployments(deployment_ids=[deployment.pk], now=timezone.now()) == []
    alert.refresh_from_db()
    assert alert.status == "resolved"
