"""dashboard/api/jobs.py: the alert list, and queuing and polling maintenance jobs."""

from __future__ import annotations

from monitoring import services
from monitoring.models import (
    Alert,
    MaintenanceJob,
)
from tests.dashboard.api.helpers import client_for, post_json

# ---------------------------------------------------------------- alerts and jobs


def test_members_see_alerts(deployment, viewer):
    services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="3 of 30 features drifted")

    response = client_for(viewer).get("/api/v1/deployments/tumour/alerts?unresolved=true")

    assert response.status_code == 200
    assert [(a["kind"], a["status"], a["title"]) for a in response.json()["items"]] == [("data_drift", "open", "3 of 30 features drifted")]


def test_an_operator_queues_a_job_and_polls_it(deployment, operator, viewer):
    queued = post_json(client_for(operator), "/api/v1/deployments/tumour/jobs", {"kind": "retrain"})

    assert queued.status_code == 201, queued.content
    job = queued.json()
    assert (job["kind"], job["status"], job["source_version"], job["requested_by"]) == ("retrain", "queued", 1, "oscar")
    polled = client_for(viewer).get(f"/api/v1/jobs/{job['id']}")
    assert polled.status_code == 200 and polled.json()["progress"] == 0
    assert [j["id"] for j in client_for(viewer).get("/api/v1/deployments/tumour/jobs").json()["items"]] == [job["id"]]


def test_a_viewer_cannot_queue_jobs_and_an_outsider_cannot_see_them(deployment, operator, viewer, outsider):
    job = services.job_queue(version=deployment.active_version(), kind=MaintenanceJob.Kind.RETRAIN, by=operator)

    response = post_json(client_for(viewer), "/api/v1/deployments/tumour/jobs", {"kind": "retrain"})

    assert response.status_code == 403
    assert MaintenanceJob.objects.count() == 1
    assert client_for(outsider).get(f"/api/v1/jobs/{job.pk}").status_code == 404


def test_a_job_that_does_not_apply_to_the_graph_is_422_with_the_reason(deployment, operator):
    response = post_json(client_for(operator), "/api/v1/deployments/tumour/jobs", {"kind": "compress_int8"})

    assert response.status_code == 422
    assert "does not apply" in response.json()["detail"] and "LinearClassifier" in response.json()["detail"]
    assert not MaintenanceJob.objects.exists()


def test_job_settings_out_of_bounds_are_422(mlp_deployment, operator):
    response = post_json(client_for(operator), "/api/v1/deployments/digits/jobs", {"kind": "compress_prune", "params": {"sparsity": 1.5}})

    assert response.status_code == 422
    assert response.json()["detail"] == "sparsity must be between 0.01 and 0.99, not 1.5."
    assert not MaintenanceJob.objects.exists()


def test_an_unknown_job_kind_is_422(deployment, operator):
    response = post_json(client_for(operator), "/api/v1/deployments/tumour/jobs", {"kind": "defragment"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "kind"
    assert not MaintenanceJob.objects.exists()
