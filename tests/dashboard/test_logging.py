"""Structured logs: JSON lines with the request's id, who asked and the deployment; request ids taken or made and
echoed; no token and no feature value in any line; Sentry and OpenTelemetry off and not imported by default."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from django.http import HttpResponseServerError
from django.test import Client, RequestFactory
from django.urls import resolve
from django.utils import timezone
from django.utils.log import log_response

from dashboard.logs import (
    ContextFilter,
    JsonFormatter,
    RouteNotPathFilter,
    TextFormatter,
    bound,
    logging_config,
    redact,
)
from monitoring import services
from monitoring.models import PredictionBatch
from tests.conftest import FEATURES, ROOT

# A feature value no log line could contain by chance.
TELLTALE = 0.7315926535


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes, formatted as LOG_FORMAT=json formats it (the same handler settings builds)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _rows(n: int) -> list[dict]:
    now = timezone.now().isoformat()
    return [{"id": f"row-{i}", "timestamp": now, "features": [TELLTALE] * len(FEATURES), "predicted_label": "1"}
            for i in range(n)]


def test_a_request_logs_one_json_line_with_its_id_its_token_prefix_and_deployment(deployment, operator, json_lines):
    token, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}", HTTP_X_REQUEST_ID="trace-0123456789abcdef")

    response = client.post(f"/api/v1/deployments/{deployment.slug}/predictions",
                           data=json.dumps({"predictions": _rows(3)}), content_type="application/json")

    assert response.status_code == 201 and response["X-Request-ID"] == "trace-0123456789abcdef"
    access = [line for line in _lines(json_lines) if line["logger"] == "watchkeeper.access"]
    assert len(access) == 1
    line = access[0]
    assert {"timestamp", "level", "logger", "message"} <= set(line)
    assert line["timestamp"].endswith("+00:00") and line["level"] == "INFO"
    assert line["request_id"] == "trace-0123456789abcdef"
    assert line["user"] == f"wk_{token.prefix}"
    assert line["deployment"] == deployment.slug
    assert (line["route"], line["method"], line["status"]) == ("api:predictions_ingest", "POST", 201)


def test_no_token_and_no_feature_value_reaches_a_log_line(deployment, operator, json_lines):
    _, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)
    secret = plaintext.split("_", 2)[2]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    url = f"/api/v1/deployments/{deployment.slug}/predictions"
    bad = _rows(2)
    bad[1]["features"] = [TELLTALE, "not a number"] + [TELLTALE] * (len(FEATURES) - 2)

    stored = client.post(url, data=json.dumps({"predictions": _rows(4)}), content_type="application/json")
    refused = client.post(url, data=json.dumps({"predictions": bad}), content_type="application/json")
    wrong_token = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}x").post(
        url, data=json.dumps({"predictions": _rows(1)}), content_type="application/json")
    # Even a careless log call of our own, naming the token, is masked on the way out.
    logging.getLogger("monitoring.careless").warning("token was %s", plaintext)

    assert (stored.status_code, refused.status_code, wrong_token.status_code) == (201, 422, 401)
    assert PredictionBatch.objects.count() == 1  # the refused batch and the bad token stored nothing
    text = json_lines.getvalue()
    assert len(_lines(json_lines)) >= 4
    assert secret not in text and plaintext not in text
    assert str(TELLTALE) not in text and "7315926" not in text
    assert "[redacted]" in text


def test_a_malformed_request_id_is_replaced_by_one_made_here(db):
    for sent in ("short", "has spaces in it 123", "x" * 200, "bad\u2028id-123456789"):
        response = Client(HTTP_X_REQUEST_ID=sent).get("/healthz")
        made = response["X-Request-ID"]
        assert made != sent and len(made) == 32 and int(made, 16) >= 0
    sent = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert Client(HTTP_X_REQUEST_ID=sent).get("/healthz")["X-Request-ID"] == sent
    first, second = Client().get("/healthz")["X-Request-ID"], Client().get("/healthz")["X-Request-ID"]
    assert first != second


def test_an_answer_tells_the_servers_own_time_and_cpu_in_server_timing_and_a_refusal_does_not(db):
    response = Client().get("/healthz")
    timing = {name: float(value) for name, value in
              (part.strip().split(";dur=") for part in response["Server-Timing"].split(","))}
    assert set(timing) == {"total", "cpu"}
    assert 0 < timing["total"] < 10_000 and 0 <= timing["cpu"] < 10_000
    # A refusal, or a route that checks a credential, gives a guesser no precise timing of the check.
    assert "Server-Timing" not in Client().get("/no-such-page")
    assert "Server-Timing" not in Client().get("/api/v1/deployments/x/serving", HTTP_AUTHORIZATION="Bearer wk_a_b")
    assert "Server-Timing" not in Client().post("/login/", {"username": "nobody", "password": "wrong"})
    assert "Server-Timing" not in Client().get("/login/")


def test_a_server_error_is_logged_by_route_name_never_by_its_path(json_lines):
    # An acknowledge link's path is its credential; Django's 5xx line would print it, and its request's repr too.
    secret = "AlertAck-credential-0123456789"
    request = RequestFactory().get(f"/ack/{secret}/")
    request.resolver_match = resolve(request.path)
    handler = logging.getLogger().handlers[-1]
    handler.addFilter(RouteNotPathFilter())

    log_response("%s: %s", "Internal Server Error", request.path, response=HttpResponseServerError(), request=request)

    [line] = [line for line in _lines(json_lines) if line["logger"] == "django.request"]
    assert secret not in json.dumps(line)
    assert line["message"] == "Internal Server Error: route alert-ack" and line["status_code"] == 500
    console = logging_config(log_format="json", level="INFO")["handlers"]["console"]
    assert "route_not_path" in console["filters"]


def test_the_text_format_carries_the_same_context():
    record = logging.LogRecord("watchkeeper.access", logging.INFO, __file__, 1, "GET %s", ("overview",), None)
    with bound(request_id="req-12345678", user="alice", deployment="tumour"):
        ContextFilter().filter(record)
    line = TextFormatter().format(record)

    assert "[request_id=req-12345678 user=alice deployment=tumour] GET overview" in line


@pytest.mark.parametrize("raw", [
    "Authorization: Bearer abc.def-ghi", "wk_1a2b3c4d_AbCdEfGhIjKlMnOpQrStUvWxYz012345", "wkp_1a2b3c4d_s3cr3tS3cr3tS3cr3t",
])
def test_redact_masks_bearer_credentials_and_our_tokens_but_keeps_their_public_prefix(raw):
    masked = redact(f"sent {raw} today")

    assert "[redacted]" in masked and masked.startswith("sent ") and masked.endswith(" today")
    assert "abc.def" not in masked and "AbCdEf" not in masked and "s3cr3t" not in masked
    if raw.startswith("wk"):
        assert raw.split("_")[0] + "_" + raw.split("_")[1] in masked  # the prefix still says which token


PROBE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
import django
django.setup()
import dashboard.wsgi  # noqa
from django.conf import settings
print(json.dumps({
    "sentry": "sentry_sdk" in sys.modules,
    # (another package's opentelemetry-proto may bring the bare namespace; the SDK and instrumentation are ours)
    "otel": any(name.startswith(("opentelemetry.sdk", "opentelemetry.instrumentation")) for name in sys.modules),
    "log_format": settings.LOG_FORMAT,
    "formatter": settings.LOGGING["formatters"]["watchkeeper"]["()"].__name__,
}))
"""


def _probe(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SENTRY_ENABLED", "OTEL_ENABLED", "LOG_FORMAT", "SENTRY_DSN")}
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=120)


def test_sentry_and_opentelemetry_are_off_and_not_imported_by_default():
    done = _probe()

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "sentry": False, "otel": False, "log_format": "text", "formatter": "TextFormatter",
    }


def test_log_format_json_selects_the_json_formatter_and_a_mistyped_one_stops_the_start():
    chosen = _probe(LOG_FORMAT="json")
    mistyped = _probe(LOG_FORMAT="yaml")
    sentry_without_dsn = _probe(SENTRY_ENABLED="true")

    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout.strip().splitlines()[-1])["formatter"] == "JsonFormatter"
    assert mistyped.returncode != 0 and "LOG_FORMAT must be text or json" in mistyped.stderr
    assert sentry_without_dsn.returncode != 0 and "SENTRY_ENABLED=true needs SENTRY_DSN" in sentry_without_dsn.stderr
