"""The alert kinds operators need besides drift: labels stopped, a scheduled check failing repeatedly, a candidate
waiting for review (emailed to the team's approvers) and a maintenance job's outcome (emailed to who queued it).
Each is raised once however often its check runs, and resolves where that fits. Mail goes to a real aiosmtpd."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import services, storage
from monitoring.alert_actions import next_actions
from monitoring.models import Alert, MaintenanceJob, Notification, Prediction
from tests.conftest import FEATURES, trained_model
from tests.receivers import SmtpReceiver, start_smtp_receiver
from workers.notifications import delivery
from workers.tasks import scheduled_check
from workers.traffic_check import check_labels_stopped

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _public_url(settings):
    settings.PUBLIC_URL = "http://wk.test"


@pytest.fixture
def smtp(settings) -> Iterator[SmtpReceiver]:
    r = start_smtp_receiver()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", r.port, False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield r
    r.controller.stop()


def _labelled_traffic(deployment, n: int = 3) -> None:
    rows = [{"id": f"r{i}", "timestamp": "2025-03-01T12:00:00Z", "features": [0.5] * len(FEATURES),
             "predicted_label": "1"} for i in range(n)]
    services.predictions_ingest(deployment=deployment, rows=rows)
    services.labels_ingest(deployment=deployment, rows=[{"id": f"r{i}", "label": "1"} for i in range(n)])


def _subject(message) -> str:
    return " ".join(str(message["Subject"]).split())  # unfolded: a long subject is folded over two lines


def _text(message) -> str:
    return next(p for p in message.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()


def test_labels_that_stopped_arriving_raise_once_and_resolve_when_they_resume(deployment):
    now = timezone.now()
    assert check_labels_stopped(deployment_ids=[deployment.pk], now=now) == []  # never had labels: nothing to miss
    _labelled_traffic(deployment)
    Prediction.objects.filter(deployment=deployment).update(labelled_at=now - timedelta(hours=50))
    assert deployment.labels_stopped_hours == 48  # the default
    assert check_labels_stopped(deployment_ids=[deployment.pk], now=now) == [deployment.pk]
    assert check_labels_stopped(deployment_ids=[deployment.pk], now=now) == [deployment.pk]  # the beat ran twice
    alert = Alert.objects.get(kind=Alert.Kind.LABELS_STOPPED)
    assert alert.status == "open" and alert.occurrences == 2 and "48 h" in alert.title
    assert alert.figures["hours_without"] == pytest.approx(50, abs=0.1) and alert.figures["limit_hours"] == 48
    services.labels_ingest(deployment=deployment, rows=[{"id": "r0", "label": "0"}])
    assert check_labels_stopped(deployment_ids=[deployment.pk], now=timezone.now()) == []
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_a_deployment_without_a_labels_limit_is_never_alerted(deployment):
    _labelled_traffic(deployment)
    Prediction.objects.filter(deployment=deployment).update(labelled_at=timezone.now() - timedelta(days=30))
    deployment.labels_stopped_hours = None
    deployment.save()
    assert check_labels_stopped(deployment_ids=[deployment.pk], now=timezone.now()) == []
    assert not Alert.objects.filter(kind=Alert.Kind.LABELS_STOPPED).exists()


def _failing_check(deployment, check: str = "drift") -> None:
    with pytest.raises(ValueError), scheduled_check(deployment, check):
        raise ValueError("the reference dataset cannot be read")


def test_a_check_failing_n_times_in_a_row_raises_one_alert_and_the_next_success_resolves_it(deployment, settings):
    settings.ALERT_CHECK_FAILURES = 3
    _failing_check(deployment)
    _failing_check(deployment)
    assert not Alert.objects.filter(kind=Alert.Kind.CHECK_FAILING).exists()  # two in a row: not yet
    _failing_check(deployment)
    _failing_check(deployment)
    alert = Alert.objects.get(kind=Alert.Kind.CHECK_FAILING)
    assert alert.title == "The scheduled drift check keeps failing" and alert.occurrences == 2
    assert alert.figures["consecutive_failures"] == 4 and "cannot be read" in alert.figures["last_error"]
    assert alert.figures["first_failed_at"] and "4 times in a row" in alert.message
    with scheduled_check(deployment, "drift"):
        pass
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_a_success_between_failures_starts_the_count_again(deployment, settings):
    settings.ALERT_CHECK_FAILURES = 3
    _failing_check(deployment, "evaluation")
    _failing_check(deployment, "evaluation")
    with scheduled_check(deployment, "evaluation"):
        pass
    _failing_check(deployment, "evaluation")
    _failing_check(deployment, "evaluation")
    _failing_check(deployment, "drift")  # another check counts apart
    assert not Alert.objects.filter(kind=Alert.Kind.CHECK_FAILING).exists()


def test_an_evaluation_whose_runs_fail_counts_as_a_failed_check(deployment, settings):
    """The real scheduled evaluation, with its evaluation set's file gone from the store: its run fails."""
    from workers.tasks import evaluate_deployment_task

    settings.ALERT_CHECK_FAILURES = 1
    storage.delete_blob(settings.MEDIA_ROOT, deployment.evaluation_dataset.sha256)
    evaluate_deployment_task(deployment.pk)
    alert = Alert.objects.get(kind=Alert.Kind.CHECK_FAILING)
    assert alert.figures["check"] == "evaluation" and "Evaluation set" in alert.figures["last_error"]
    assert [a.url for a in next_actions(alert)] == ["/d/tumour/settings"]


def test_a_candidate_waiting_is_emailed_to_the_approvers_once_and_resolves_when_decided(
    deployment, approver, operator, team, smtp,
):
    approver.email = "alice@example.com"
    approver.save()
    operator.email = "oscar@example.com"  # not an approver: not emailed
    operator.save()
    data, recipe = trained_model(C=0.5)
    version = services.version_register(deployment=deployment, data=data, by=operator, recipe=recipe)
    alert = Alert.objects.get(kind=Alert.Kind.CANDIDATE_WAITING)
    assert alert.severity == "info" and alert.figures["version"] == version.number
    services.candidate_waiting_raise(version=version)  # raised again: refreshed, not emailed again
    direct = Notification.objects.get(channel=None)
    assert direct.recipients == ["alice@example.com"] and direct.alert == alert
    delivery.deliver_due()
    assert smtp.mailbox.envelopes == [["alice@example.com"]]
    text = _text(smtp.mailbox.messages[0])
    assert f"v{version.number} is waiting for your review" in _subject(smtp.mailbox.messages[0])
    assert f"Next: Review v{version.number}: http://wk.test/d/tumour/versions/{version.number}/compare" in text
    assert "First seen:" in text
    services.version_reject(version=version, by=approver, comment="not better")
    alert.refresh_from_db()
    assert alert.status == "resolved"


def _running_job(deployment, by) -> MaintenanceJob:
    return MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.active_version(), kind=MaintenanceJob.Kind.RETRAIN,
        status=MaintenanceJob.Status.RUNNING, requested_by=by, started_at=timezone.now(),
    )


def test_a_failed_job_is_emailed_to_who_queued_it_once(deployment, operator, smtp):
    operator.email = "oscar@example.com"
    operator.save()
    job = _running_job(deployment, operator)
    assert services.job_fail(job_id=job.pk, error="the recipe raised KeyError: 'target'")
    assert not services.job_fail(job_id=job.pk, error="again")  # a second report of the same failure
    delivery.deliver_due()
    assert smtp.mailbox.envelopes == [["oscar@example.com"]]
    message = smtp.mailbox.messages[0]
    assert "your Retrain from recipe job failed" in _subject(message)
    assert "KeyError" in _text(message) and "http://wk.test/d/tumour/#jobs" in _text(message)


def test_a_finished_job_tells_who_queued_it_which_candidate_waits(deployment, operator, approver, smtp):
    operator.email = "oscar@example.com"
    operator.save()
    job = _running_job(deployment, operator)
    data, recipe = trained_model(C=0.5)
    candidate = services.job_candidate_register(job=job, data=data, recipe=recipe, notes="retrained")
    assert candidate is not None
    assert services.job_succeed(job=job, candidate=candidate)
    assert not services.job_succeed(job=job, candidate=candidate)  # the task ran twice
    delivery.deliver_due()
    assert smtp.mailbox.envelopes == [["oscar@example.com"]]  # the approver has no address: only the requester
    assert f"v{candidate.number} is waiting for review" in _subject(smtp.mailbox.messages[0])


def test_an_approver_sets_the_labels_limit_on_the_settings_page_and_bad_values_write_nothing(deployment, approver, viewer):
    from django.test import Client

    from monitoring.models import AuditEvent

    client = Client()
    client.force_login(approver)
    assert 'name="labels_stopped_hours"' in client.get("/d/tumour/settings").content.decode()
    assert client.post("/d/tumour/settings/labels", {"labels_stopped_hours": "12"}).status_code == 302
    deployment.refresh_from_db()
    assert deployment.labels_stopped_hours == 12
    assert AuditEvent.objects.filter(action="deployment.labels_alert_configure").count() == 1
    for bad in ("0", "many"):
        assert client.post("/d/tumour/settings/labels", {"labels_stopped_hours": bad}).status_code in (400, 422)
    viewer_client = Client()
    viewer_client.force_login(viewer)
    assert viewer_client.post("/d/tumour/settings/labels", {"labels_stopped_hours": "1"}).status_code == 403
    deployment.refresh_from_db()
    assert deployment.labels_stopped_hours == 12
    assert AuditEvent.objects.filter(action="deployment.labels_alert_configure").count() == 1
    assert client.post("/d/tumour/settings/labels", {"labels_stopped_hours": ""}).status_code == 302
    deployment.refresh_from_db()
    assert deployment.labels_stopped_hours is None
