"""GET/PUT /api/v1/deployments/{slug}/retention: what is kept and the next purge; approvers change it (audited),
bad values are a problem+json 422 with nothing written."""

from __future__ import annotations

import json

from monitoring.models import AuditEvent
from tests.dashboard.api.helpers import client_for


def _put(client, body: dict):
    return client.generic("PUT", "/api/v1/deployments/tumour/retention", data=json.dumps(body),
                          content_type="application/json")


def test_a_viewer_reads_what_is_kept(deployment, viewer):
    body = client_for(viewer).get("/api/v1/deployments/tumour/retention").json()

    assert (body["retain_predictions_days"], body["retain_reports_days"], body["full_resolution_days"]) == (90, 365, 365)
    assert (body["stored_batches"], body["stored_rows"], body["oldest_prediction_at"]) == (0, 0, None)
    assert body["next_purge_at"].endswith(":30:00Z") and body["purged_at"] is None
    detail = client_for(viewer).get("/api/v1/deployments/tumour").json()
    assert (detail["retain_predictions_days"], detail["retain_reports_days"]) == (90, 365)


def test_an_approver_sets_the_retention_and_it_is_audited(deployment, approver):
    response = _put(client_for(approver), {"retain_predictions_days": 30, "retain_reports_days": None})

    assert response.status_code == 200
    assert (response.json()["retain_predictions_days"], response.json()["retain_reports_days"]) == (30, None)
    deployment.refresh_from_db()
    assert (deployment.retain_predictions_days, deployment.retain_reports_days) == (30, None)
    assert AuditEvent.objects.get(action="deployment.retention_configure").actor == approver


def test_a_retention_out_of_range_is_a_422_naming_the_field_and_nothing_changes(deployment, approver):
    response = _put(client_for(approver), {"retain_predictions_days": 90, "retain_reports_days": 0})

    assert response.status_code == 422 and response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "retain_reports_days"
    deployment.refresh_from_db()
    assert deployment.retain_reports_days == 365
    assert not AuditEvent.objects.filter(action="deployment.retention_configure").exists()


def test_an_operator_cannot_set_the_retention(deployment, operator):
    response = _put(client_for(operator), {"retain_predictions_days": 7, "retain_reports_days": 7})

    assert response.status_code == 403
    deployment.refresh_from_db()
    assert (deployment.retain_predictions_days, deployment.retain_reports_days) == (90, 365)
    assert not AuditEvent.objects.filter(action="deployment.retention_configure").exists()
