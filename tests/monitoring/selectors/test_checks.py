"""Which deployments beat's sweep finds due a scheduled check: read from their rows, so a lost sweep is made up
by the next one and a check done is not done again before its interval."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import selectors, services

pytestmark = pytest.mark.django_db


def test_a_deployment_never_evaluated_is_due_and_one_evaluated_is_not_until_its_interval_has_passed(deployment, settings):
    settings.EVALUATION_INTERVAL_MINUTES, settings.CHECK_SWEEP_SECONDS = 60, 60
    now = timezone.now()
    assert selectors.deployments_due_for_evaluation(deployment_ids=[deployment.pk], now=now) == [deployment.pk]

    services.scheduled_check_record(deployment=deployment, check="evaluation", error=None, now=now)

    due = selectors.deployments_due_for_evaluation
    assert due(deployment_ids=[deployment.pk], now=now + timedelta(minutes=1)) == []
    assert due(deployment_ids=[deployment.pk], now=now + timedelta(minutes=59)) == []  # more than half a sweep early
    assert due(deployment_ids=[deployment.pk], now=now + timedelta(minutes=59, seconds=30)) == [deployment.pk]
    # The drift check's state is its own: an evaluation does not make it done.
    assert selectors.deployments_due_for_drift(deployment_ids=[deployment.pk], now=now + timedelta(minutes=1)) == [
        deployment.pk
    ]


def test_a_failed_check_counts_as_checked_so_a_failing_deployment_is_retried_at_its_interval_not_every_sweep(
    deployment, settings
):
    settings.DRIFT_INTERVAL_MINUTES = 30
    now = timezone.now()

    services.scheduled_check_record(deployment=deployment, check="drift", error="no reference profile", now=now)

    due = selectors.deployments_due_for_drift
    assert due(deployment_ids=[deployment.pk], now=now + timedelta(minutes=5)) == []
    assert due(deployment_ids=[deployment.pk], now=now + timedelta(minutes=30)) == [deployment.pk]


def test_without_its_own_interval_a_deployment_is_checked_for_drift_every_drift_interval_minutes(deployment, settings):
    settings.DRIFT_INTERVAL_MINUTES = 30
    now = timezone.now()
    services.scheduled_check_record(deployment=deployment, check="drift", error=None, now=now)
    assert deployment.drift_interval_minutes in (None, 0)

    due = selectors.deployments_due_for_drift
    assert due(deployment_ids=[deployment.pk], now=now + timedelta(minutes=20)) == []
    assert due(deployment_ids=[deployment.pk], now=now + timedelta(minutes=31)) == [deployment.pk]
