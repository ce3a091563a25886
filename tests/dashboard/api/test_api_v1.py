"""API conventions: /api/v1 with the old paths deprecated, RFC 9457 problems, one page shape on every list,
and the read endpoints with their streamed CSV twins."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.api import api
from monitoring import services
from monitoring.models import Alert, AuditEvent, DriftFeaturePoint, DriftReport
from tests.dashboard.api.helpers import bearer, client_for, post_json, prediction_rows

pytestmark = pytest.mark.django_db


def test_the_schema_and_docs_are_under_v1(deployment, viewer):
    schema = Client().get("/api/v1/openapi.json")
    docs = client_for(viewer).get("/api/v1/docs")

    assert schema.status_code == 200 and docs.status_code == 200
    assert all(path.startswith("/api/v1/") for path in schema.json()["paths"])
    assert "Deprecation" not in schema


def test_an_old_path_still_answers_and_says_it_is_deprecated(deployment, viewer, token):
    old = client_for(viewer).get("/api/deployments/tumour")
    new = client_for(viewer).get("/api/v1/deployments/tumour")
    old_ingest = post_json(Client(), "/api/deployments/tumour/predictions", {"predictions": prediction_rows(1)},
                           **bearer(token))

    assert old.status_code == 200 and old.json() == new.json()
    assert old["Deprecation"].startswith("@") and int(old["Deprecation"][1:]) > 0  # RFC 9745: @<epoch seconds>
    assert old["Link"] == '<http://testserver/api/v1/deployments/tumour>; rel="successor-version"'
    assert "Deprecation" not in new and "Link" not in new
    assert old_ingest.status_code == 201 and "Deprecation" in old_ingest
    assert old_ingest["Location"].startswith("/api/v1/")  # the batch's status, at its successor


@pytest.mark.parametrize("url, status", [
    ("/api/v1/deployments/tumour", 401),  # no credentials
    ("/api/v1/deployments/nope", 404),
    ("/api/v1/deployments/tumour/alerts?limit=5000", 422),
])
def test_errors_are_rfc_9457_problems_keeping_the_error_list(deployment, viewer, url, status):
    client = Client() if status == 401 else client_for(viewer)

    response = client.get(url)

    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "errors"}
    assert (body["type"], body["status"]) == ("about:blank", status) and body["title"] and body["detail"]
    if status == 422:
        assert body["errors"] == [{"row": None, "line": None, "field": "limit", "message": body["errors"][0]["message"]}]


def test_every_list_has_the_one_page_shape():
    schema = api.get_openapi_schema()
    components = schema["components"]["schemas"]
    lists = []
    for path, methods in schema["paths"].items():
        get = methods.get("get")
        if get is None or path.endswith(".csv"):
            continue
        content = get["responses"][200]["content"]
        if "application/json" not in content:  # a file: the model download
            assert path.endswith("/model"), path
            continue
        ref = content["application/json"]["schema"].get("$ref", "")
        target = components.get(ref.rsplit("/", 1)[-1], {})
        assert target.get("type") != "array", f"{path} answers a bare array"
        if "items" in target.get("properties", {}):
            lists.append(path)
            assert set(target["properties"]) == {"items", "count", "page", "limit", "next", "previous"}, path
            assert {p["name"] for p in get["parameters"]} >= {"page", "limit"}, path
    assert len(lists) >= 18, lists  # every list we serve (18 when written)


def test_following_next_walks_every_item_once(deployment, viewer):
    for i in range(5):
        services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key=f"d{i}", title=f"drift {i}")
    client = client_for(viewer)

    url, seen, pages = "/api/v1/deployments/tumour/alerts?limit=2&kind=data_drift", [], 0
    while url:
        page = client.get(url).json()
        seen += [a["title"] for a in page["items"]]
        url, pages = page["next"], pages + 1
        assert page["count"] == 5 and page["limit"] == 2
    assert pages == 3 and sorted(seen) == [f"drift {i}" for i in range(5)]
    last = client.get("/api/v1/deployments/tumour/alerts?limit=2&page=3").json()
    assert last["next"] is None and last["previous"].endswith("page=2")


def _rows(response) -> list[dict]:
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_audit_log_reads_as_a_page_and_as_csv_with_the_same_filters(deployment, approver, viewer):
    client = client_for(viewer)
    page = client.get("/api/v1/deployments/tumour/audit?action=version.").json()
    rows = _rows(client.get("/api/v1/deployments/tumour/audit.csv?action=version."))

    expected = list(AuditEvent.objects.filter(deployment=deployment, action__startswith="version.").order_by("-at", "-id"))
    assert expected, "the deployment fixture registers a version"
    assert [e["id"] for e in page["items"]] == [e.pk for e in expected]
    assert [int(r["id"]) for r in rows] == [e.pk for e in expected]
    assert rows[0]["actor"] == expected[0].actor_label and rows[0]["action"] == expected[0].action


def test_evaluations_metrics_drift_and_alerts_export_as_csv(deployment, viewer):
    now = timezone.now()
    report = DriftReport.objects.create(deployment=deployment, window_start=now - timedelta(hours=1), window_end=now,
                                        n_reference=10, n_current=10, drifted=True)
    DriftFeaturePoint.objects.create(report=report, deployment=deployment, feature="f3", at=now, test="ks",
                                     statistic=0.4, p_value=0.001, threshold=0.01, moved=0.2, drifted=True)
    services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="d", title="Drift, f3")
    client = client_for(viewer)

    evaluations = client.get("/api/v1/deployments/tumour/evaluations").json()
    evaluation_rows = _rows(client.get("/api/v1/deployments/tumour/evaluations.csv"))
    metrics = _rows(client.get("/api/v1/deployments/tumour/metrics.csv?name=accuracy"))
    reports = _rows(client.get("/api/v1/deployments/tumour/drift-reports.csv?drifted=true"))
    features = client.get("/api/v1/deployments/tumour/drift-features?feature=f3").json()["items"]
    alerts = _rows(client.get("/api/v1/deployments/tumour/alerts.csv?unresolved=true"))

    assert len(evaluation_rows) == evaluations["count"]
    assert {r["name"] for r in metrics} <= {"accuracy"}
    assert [int(r["id"]) for r in reports] == [report.pk]
    assert [(f["feature"], f["drifted"], f["report"]) for f in features] == [("f3", True, report.pk)]
    assert [a["title"] for a in alerts] == ["Drift, f3"]


def test_an_empty_export_is_a_header_row(deployment, viewer):
    response = client_for(viewer).get("/api/v1/deployments/tumour/drift-features.csv?feature=none")

    assert b"".join(response.streaming_content).decode().strip() == "at,feature,test,statistic,p_value,threshold,moved,drifted,report"
