"""dashboard/api/routes.py: the OpenAPI schema."""

from __future__ import annotations

from django.test import Client

# ---------------------------------------------------------------- the schema


def test_the_openapi_schema_lists_every_endpoint_with_its_errors(db):
    response = Client().get("/api/v1/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert {"/api/v1/deployments/{slug}/predictions", "/api/v1/deployments/{slug}/labels"} <= set(paths)
    ingest = paths["/api/v1/deployments/{slug}/predictions"]["post"]
    assert ingest["security"] == [{"IngestionToken": []}]
    assert {"401", "403", "413", "422"} <= set(ingest["responses"])
    body = ingest["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]["predictions"]["items"]["properties"]) >= {"id", "timestamp", "features", "predicted_label"}
    assert {"latency_us", "calls", "errors", "instance"} <= set(body["properties"])  # the serving client's calls
    assert {"version", "instance"} <= {p["name"] for p in ingest["parameters"] if p["in"] == "query"}
    assert {"Idempotency-Key"} <= {p["name"] for p in ingest["parameters"] if p["in"] == "header"}
    assert {"/api/v1/deployments/{slug}/predictions/upload", "/api/v1/deployments/{slug}/labels/upload"} <= set(paths)
    upload = paths["/api/v1/deployments/{slug}/predictions/upload"]["post"]
    assert "file" in upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    answer = schema["components"]["schemas"]["IngestOut"]["properties"]
    assert set(answer) == {"batch_id", "received", "created", "replayed", "status"}
    assert "404" in paths["/api/v1/deployments/{slug}/batches/{batch_id}"]["get"]["responses"]
    operations = [op for path in paths.values() for op in path.values()]
    assert all(op["summary"] and op["responses"] for op in operations)
    # Every operation documents its refusals; the public signing key has none to refuse.
    refusable = [op for path, ops in paths.items() if path != "/api/v1/signing-key" for op in ops.values()]
    assert all(any(code.startswith("4") for code in op["responses"]) for op in refusable)
    assert Client().get("/api/v1/docs").status_code == 200
