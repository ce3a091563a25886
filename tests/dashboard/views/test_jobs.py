"""dashboard/views/jobs.py: job progress as JSON, and queuing."""

from __future__ import annotations

from django.urls import reverse

from monitoring import services
from monitoring.models import (
    MaintenanceJob,
)
from tests.conftest import trained_model

# ---------------------------------------------------------------- jobs, alerts, tokens


def test_job_progress_is_reported_as_json(client, viewer, deployment):
    job = MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.active_version(), kind=MaintenanceJob.Kind.COMPRESS_INT8,
        status=MaintenanceJob.Status.RUNNING, progress=40, progress_message="Quantizing",
    )
    client.force_login(viewer)

    response = client.get(reverse("job-progress", args=[job.pk]))

    assert response.status_code == 200
    assert response.json() == {
        "id": job.pk, "status": "running", "status_label": "Running", "progress": 40, "message": "Quantizing",
        "error": "", "finished": False, "candidate": None, "elapsed": "",  # not started yet
    }
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()
    assert f'data-job-id="{job.pk}" data-job-status="running"' in page


def test_queueing_a_job_that_cannot_run_shows_the_services_message(client, operator, deployment):
    version = services.version_register(deployment=deployment, data=trained_model(C=0.3)[0], by=operator)  # no recipe
    client.force_login(operator)

    response = client.post(
        reverse("job-queue", args=["tumour"]), {"version": version.number, "kind": "retrain"}, follow=True
    )

    assert "has no training recipe" in response.content.decode()
    assert not MaintenanceJob.objects.exists()


def test_a_viewer_cannot_queue_a_job(client, viewer, deployment):
    client.force_login(viewer)

    response = client.post(reverse("job-queue", args=["tumour"]), {"version": 1, "kind": "compress_int8"})

    assert response.status_code == 403
    assert not MaintenanceJob.objects.exists()
