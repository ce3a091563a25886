"""dashboard/api/serving.py: the serving contract (docs/serving.md) on the real stack: ETag and 304, the long
poll against a live server, signed model delivery, the signing key, and who may ask."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.serving_watch import watch
from monitoring import services, storage
from monitoring.models import ModelVersion, Prediction, PredictionBatch, ServingInstance
from monitoring.services import serving as serving_service
from monitoring.services.serving import _forget_seen
from tests.conftest import CLASSES, FEATURES, trained_model, wait_for
from tests.dashboard.api.helpers import bearer, client_for, post_json, prediction_rows

SERVING = "/api/v1/deployments/tumour/serving"


@pytest.fixture(scope="module", autouse=True)
def _watch_stopped_after():
    yield
    watch.stop()  # its LISTEN connection would keep the test database from being dropped
    serving_service._seen.stop()  # and the last-seen writer's connection too


@pytest.fixture(autouse=True)
def _fresh_seen():
    _forget_seen()  # every test's first poll writes its instance row


@pytest.fixture
def candidate(deployment, operator):
    return services.version_register(deployment=deployment, data=trained_model(C=0.05)[0], by=operator)


def _poll(token, *, instance="i-1", etag=None, wait=0, **headers):
    extra = bearer(token) | {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    if etag:
        extra["HTTP_IF_NONE_MATCH"] = etag
    return Client().get(SERVING, {"instance": instance, "wait": wait}, **extra)


def test_it_tells_an_instance_the_active_version_with_a_signature_that_verifies(deployment, token):
    response = _poll(token)

    assert response.status_code == 200, response.content
    body = response.json()
    v1 = deployment.active_version()
    assert response["Cache-Control"] == "no-cache" and response["ETag"].startswith('"')
    assert body == {
        "deployment": "tumour", "instance": "i-1", "version": 1,
        "model": {"url": "http://testserver/api/v1/deployments/tumour/versions/1/model", "sha256": v1.sha256,
                  "size": v1.size_bytes, "signature": v1.signature, "key_id": v1.signing_key_id},
        "feature_names": FEATURES, "classes": CLASSES, "poll_after": settings.SERVING_POLL_AFTER_SECONDS,
    }
    key = Client().get("/api/v1/signing-key").json()
    raw = base64.b64decode(key["public_key"])
    assert key["algorithm"] == "ed25519" and key["key_id"] == hashlib.sha256(raw).hexdigest()[:16] == body["model"]["key_id"]
    assert "BEGIN PUBLIC KEY" in key["pem"]
    # Raises InvalidSignature if it does not verify: the contract's message, byte for byte.
    Ed25519PublicKey.from_public_bytes(raw).verify(
        base64.b64decode(body["model"]["signature"]), b"watchkeeper-model-v1\n" + v1.sha256.encode("ascii")
    )


def test_the_same_etag_gets_304_without_a_body_until_the_version_changes(deployment, token, candidate, approver):
    etag = _poll(token)["ETag"]

    unchanged = _poll(token, etag=etag)
    services.version_approve(version=candidate, by=approver, comment="ship it")
    changed = _poll(token, etag=etag)

    assert (unchanged.status_code, unchanged.content, unchanged["ETag"]) == (304, b"", etag)
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert changed["ETag"] != etag


def test_a_poll_records_the_instance_and_the_version_it_reports(deployment, token):
    _poll(token, instance="web-7", **{"X-Watchkeeper-Serving-Version": "1"})

    seen = ServingInstance.objects.get()
    assert (seen.deployment_id, seen.instance_id, seen.version_reported, seen.version_told) == (deployment.pk, "web-7", 1, 1)
    assert seen.first_seen <= seen.last_seen


def test_a_reported_version_that_is_not_a_number_is_422_and_records_nothing(deployment, token):
    response = _poll(token, **{"X-Watchkeeper-Serving-Version": "latest"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "X-Watchkeeper-Serving-Version"
    assert not ServingInstance.objects.exists()


def test_a_wrong_token_or_another_deployments_token_is_refused_and_records_nothing(deployment, token, other_deployment):
    _, theirs = services.token_create(deployment=other_deployment, name="theirs", by=None)

    wrong = _poll("wk_deadbeef_nope")
    none = Client().get(SERVING, {"instance": "i-1"})
    other = _poll(theirs)
    model = Client().get("/api/v1/deployments/tumour/versions/1/model", **bearer(theirs))

    assert (wrong.status_code, none.status_code, other.status_code, model.status_code) == (401, 401, 403, 403)
    assert "detail" in wrong.json() and "another deployment" in other.json()["detail"]
    assert not ServingInstance.objects.exists()


def test_the_model_is_delivered_with_etag_and_content_digest(deployment, token):
    v1 = deployment.active_version()

    response = Client().get("/api/v1/deployments/tumour/versions/1/model", **bearer(token))
    again = Client().get("/api/v1/deployments/tumour/versions/1/model", HTTP_IF_NONE_MATCH=f'"{v1.sha256}"', **bearer(token))

    assert response.status_code == 200
    assert response.content == trained_model()[0]
    assert response["Content-Type"] == "application/octet-stream"
    assert response["ETag"] == f'"{v1.sha256}"'
    assert response["Content-Length"] == str(len(response.content))
    assert response["Content-Digest"] == f"sha-256=:{base64.b64encode(hashlib.sha256(response.content).digest()).decode()}:"
    assert (again.status_code, again.content) == (304, b"")


@pytest.fixture
def tampered(deployment):
    """v1's stored file with one byte changed; put back afterwards (the store is shared by the session)."""
    path = storage._path_for(settings.MEDIA_ROOT, deployment.active_version().sha256)
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    yield
    path.write_bytes(original)


def test_a_tampered_stored_model_is_never_served(deployment, token, tampered, caplog):
    response = Client().get("/api/v1/deployments/tumour/versions/1/model", **bearer(token))

    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/problem+json")  # the API's error format
    assert "does not match its recorded sha256" in response.json()["detail"]
    assert any("refused to serve tumour v1" in r.getMessage() for r in caplog.records)


def test_an_unsigned_version_is_neither_announced_nor_delivered(deployment, token):
    ModelVersion.objects.filter(deployment=deployment).update(signature="", signing_key_id="")

    serving = _poll(token)
    model = Client().get("/api/v1/deployments/tumour/versions/1/model", **bearer(token))

    assert serving.status_code == 503 and "not signed" in serving.json()["detail"]
    assert model.status_code == 404 and "not signed" in model.json()["detail"]
    assert not ServingInstance.objects.exists()


def test_a_forged_signature_is_not_served(deployment, token):
    forged = base64.b64encode(bytes(64)).decode()
    ModelVersion.objects.filter(deployment=deployment).update(signature=forged)

    assert _poll(token).status_code == 503


def test_sign_versions_signs_what_is_unsigned_and_then_it_is_served(deployment, token, capsys):
    ModelVersion.objects.filter(deployment=deployment).update(signature="", signing_key_id="")

    call_command("sign_versions")

    assert "signed 1 version(s)" in capsys.readouterr().out
    assert _poll(token).status_code == 200


def test_without_a_signing_key_nothing_is_served_and_the_key_endpoint_says_why(deployment, token, settings):
    settings.SIGNING_KEY_FILE = ""

    assert _poll(token).status_code == 503
    response = Client().get("/api/v1/signing-key")
    assert response.status_code == 503 and "SIGNING_KEY_FILE" in response.json()["detail"]


# ---------------------------------------------------------------- the long poll, against a real web server


def _http_poll(live_server, token, *, etag=None, wait=0):
    request = urllib.request.Request(
        f"{live_server.url}{SERVING}?instance=live-1&wait={wait}",
        headers={"Authorization": f"Bearer {token}", **({"If-None-Match": etag} if etag else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["approve", "rollback"])
def test_a_long_poll_answers_within_a_second_of_a_change(live_server, deployment, token, candidate, approver, change):
    if change == "rollback":
        services.version_approve(version=candidate, by=approver, comment="ship it")
    status, headers, _ = _http_poll(live_server, token)
    assert status == 200
    answered: dict = {}

    def long_poll():
        answered["result"] = _http_poll(live_server, token, etag=headers["ETag"], wait=20)
        answered["at"] = time.monotonic()

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(1.0)  # the poll is waiting on the server by now
    assert "result" not in answered
    changed_at = time.monotonic()
    if change == "approve":
        services.version_approve(version=candidate, by=approver, comment="ship it")
    else:
        services.deployment_rollback(deployment=deployment, by=approver, comment="back to v1")
    poller.join(timeout=20)

    status, _, body = answered["result"]
    assert status == 200
    assert json.loads(body)["version"] == (2 if change == "approve" else 1)
    assert answered["at"] - changed_at < 1.0


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_without_a_change_answers_304_after_its_wait(live_server, deployment, token):
    _, headers, _ = _http_poll(live_server, token)

    started = time.monotonic()
    status, again, body = _http_poll(live_server, token, etag=headers["ETag"], wait=1)

    assert (status, body, again["ETag"]) == (304, b"", headers["ETag"])
    assert 1.0 <= time.monotonic() - started < 3.0
    # Server-Timing tells the view's own time from the wait, and the whole request's (wall and CPU).
    timing = {name: float(value) for name, value in
              (part.strip().split(";dur=") for part in again["Server-Timing"].split(","))}
    assert 900 <= timing["wait"] <= 3000
    assert timing["app"] < timing["wait"] <= timing["total"]
    assert timing["cpu"] < 500  # waiting costs no CPU


def _cached_after_polls(live_server, token) -> tuple[int, object]:
    """Poll until this process's serving endpoint answers the token from its cache (the watch connected)."""
    from dashboard.api import serving as serving_api

    key = hashlib.sha256(token.encode()).digest()
    deadline = time.monotonic() + 10
    while key not in serving_api._tokens and time.monotonic() < deadline:
        status, headers, _ = _http_poll(live_server, token)
        assert status == 200
        time.sleep(0.05)
    assert key in serving_api._tokens, "the token was never cached: this test would prove nothing"
    _, headers, _ = _http_poll(live_server, token)
    return watch.epoch, headers["ETag"]


def _token_row(deployment):
    from monitoring.models import ApiToken

    return ApiToken.objects.get(deployment=deployment, revoked_at=None)


@pytest.mark.django_db(transaction=True)
def test_a_revoked_token_is_refused_by_the_serving_endpoints_once_its_commit_is_heard(live_server, deployment, token,
                                                                                      operator):
    epoch, _ = _cached_after_polls(live_server, token)

    revoked_at = time.monotonic()
    services.token_revoke(token=_token_row(deployment), by=operator)
    while watch.epoch == epoch and time.monotonic() - revoked_at < 2:
        time.sleep(0.001)
    heard_after = time.monotonic() - revoked_at
    status, _, body = _http_poll(live_server, token)

    # Well within the cache's 5 s: the revocation's NOTIFY, not the entry's expiry, ended it.
    assert heard_after < 0.5, f"the revocation was heard after {heard_after:.2f} s"
    assert status == 401, body
    assert "revoked" in json.loads(body)["detail"]


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_waiting_when_its_token_is_revoked_is_ended_with_401(live_server, deployment, token, operator):
    _, etag = _cached_after_polls(live_server, token)
    answered: dict = {}

    def long_poll():
        answered["result"] = _http_poll(live_server, token, etag=etag, wait=20)
        answered["at"] = time.monotonic()

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(1.0)  # waiting on the server by now
    assert "result" not in answered
    revoked_at = time.monotonic()
    services.token_revoke(token=_token_row(deployment), by=operator)
    poller.join(timeout=20)

    assert answered["result"][0] == 401
    assert answered["at"] - revoked_at < 1.0


def test_the_deployment_page_shows_the_fleet_by_version(deployment, token, candidate, approver, viewer):
    empty = client_for(viewer).get(reverse("deployment", args=["tumour"])).content.decode()
    _poll(token, instance="a", **{"X-Watchkeeper-Serving-Version": "1"})
    _poll(token, instance="b", **{"X-Watchkeeper-Serving-Version": "1"})
    services.version_approve(version=candidate, by=approver, comment="ship it")
    _poll(token, instance="c", **{"X-Watchkeeper-Serving-Version": "2"})

    page = client_for(viewer).get(reverse("deployment", args=["tumour"])).content.decode()

    assert 'data-empty="fleet"' in empty
    assert "3 instances: 1 on v2, 2 on v1, last seen" in " ".join(page.split())
    assert page.count("switching") == 0  # a and b were told v1 when they polled, and said so


# ---------------------------------------------------------------- traffic by version


def test_a_batch_is_credited_to_the_version_it_names(deployment, token, candidate):
    response = post_json(Client(), "/api/v1/deployments/tumour/predictions",
                         {"predictions": prediction_rows(3), "version": 2}, **bearer(token))
    unnamed = post_json(Client(), "/api/v1/deployments/tumour/predictions",
                        {"predictions": prediction_rows(3, start=3)}, **bearer(token))

    assert response.status_code == unnamed.status_code == 201, response.content
    assert PredictionBatch.objects.get(pk=response.json()["batch_id"]).version == candidate
    assert PredictionBatch.objects.get(pk=unnamed.json()["batch_id"]).version == deployment.active_version()


@pytest.mark.parametrize("version", [99, "2", True, 1.5])
def test_a_batch_naming_no_version_of_this_deployment_is_422_and_stores_nothing(deployment, token, candidate, version):
    response = post_json(Client(), "/api/v1/deployments/tumour/predictions",
                         {"predictions": prediction_rows(3), "version": version}, **bearer(token))

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["version"]
    assert not PredictionBatch.objects.exists() and not Prediction.objects.exists()


def _traffic_csv(n: int, prefix: str) -> bytes:
    header = ",".join(["id", "timestamp", "predicted_label", *FEATURES])
    return "\n".join([header] + [",".join([f"{prefix}-{i}", "2025-03-01T12:00:00", "1", *["0.5"] * len(FEATURES)])
                                 for i in range(n)]).encode()


def test_an_uploaded_file_is_credited_to_the_version_its_query_or_form_field_names(deployment, token, candidate):
    from django.core.files.uploadedfile import SimpleUploadedFile

    by_query = Client().post("/api/v1/deployments/tumour/predictions/upload?version=2", _traffic_csv(3, "q"),
                             content_type="text/csv", **bearer(token))
    by_form = Client().post("/api/v1/deployments/tumour/predictions/upload",
                            {"file": SimpleUploadedFile("t.csv", _traffic_csv(3, "f"), content_type="text/csv"),
                             "version": "2"}, **bearer(token))
    unnamed = Client().post("/api/v1/deployments/tumour/predictions/upload", _traffic_csv(3, "u"),
                            content_type="text/csv", **bearer(token))

    assert by_query.status_code == by_form.status_code == unnamed.status_code == 201, by_form.content
    assert PredictionBatch.objects.get(pk=by_query.json()["batch_id"]).version == candidate
    assert PredictionBatch.objects.get(pk=by_form.json()["batch_id"]).version == candidate
    assert PredictionBatch.objects.get(pk=unnamed.json()["batch_id"]).version == deployment.active_version()


@pytest.mark.parametrize("field", ["99", "two"])
def test_an_upload_naming_no_version_of_this_deployment_is_422_and_stores_nothing(deployment, token, candidate, field):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = Client().post("/api/v1/deployments/tumour/predictions/upload",
                             {"file": SimpleUploadedFile("t.csv", _traffic_csv(3, "x"), content_type="text/csv"),
                              "version": field}, **bearer(token))

    assert response.status_code == 422, response.content
    assert [e["field"] for e in response.json()["errors"]] == ["version"]
    assert not PredictionBatch.objects.exists() and not Prediction.objects.exists()


# ---------------------------------------------------------------- last seen, written off the request path


def _live_poll(live_server, token, instance: str, version: int | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    if version is not None:
        headers["X-Watchkeeper-Serving-Version"] = str(version)
    request = urllib.request.Request(f"{live_server.url}{SERVING}?instance={instance}", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


@pytest.fixture
def writer_stopped(settings):
    """No write by the background writer unless the test flushes: it is stopped and would wait an hour."""
    serving_service._seen.stop()
    settings.SERVING_SEEN_FLUSH_SECONDS = 3600
    yield
    serving_service._seen.stop()


@pytest.mark.django_db(transaction=True)
def test_a_poll_writes_nothing_itself_and_the_writer_records_every_instance_with_its_versions(
        live_server, deployment, token, writer_stopped):
    for instance, version in (("web-1", 1), ("web-2", None), ("web-1", 1)):
        assert _live_poll(live_server, token, instance, version) == 200

    assert not ServingInstance.objects.exists()  # the polls were answered without writing
    assert serving_service._seen._thread is not None and serving_service._seen._thread.is_alive()
    assert services.serving_seen_flush() == 2  # one upsert for both instances, the repeated poll once
    seen = {i.instance_id: (i.version_reported, i.version_told) for i in ServingInstance.objects.all()}
    assert seen == {"web-1": (1, 1), "web-2": (None, 1)}


@pytest.mark.django_db(transaction=True)
def test_the_fleet_on_record_is_current_within_seconds_of_a_poll(live_server, deployment, token, settings):
    serving_service._seen.stop()
    settings.SERVING_SEEN_FLUSH_SECONDS = 1
    polled_at = time.monotonic()
    _live_poll(live_server, token, "web-9", 1)

    wait_for(lambda: ServingInstance.objects.filter(instance_id="web-9", version_reported=1).exists(), timeout=5,
             interval=0.05)
    assert time.monotonic() - polled_at < 3.0
    serving_service._seen.stop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death is the point
def test_a_writer_that_died_is_restarted_by_the_next_poll(live_server, deployment, token, settings, monkeypatch):
    serving_service._seen.stop()
    settings.SERVING_SEEN_FLUSH_SECONDS = 1

    def die() -> int:
        raise SystemExit("killed")  # not an Exception: it ends the thread

    monkeypatch.setattr(serving_service._seen, "flush", die)
    _live_poll(live_server, token, "web-3")
    dead = serving_service._seen._thread
    assert dead is not None
    dead.join(timeout=5)
    assert not dead.is_alive()
    monkeypatch.undo()
    settings.SERVING_SEEN_FLUSH_SECONDS = 1

    _live_poll(live_server, token, "web-4")

    assert serving_service._seen._thread is not dead and serving_service._seen._thread.is_alive()
    wait_for(lambda: set(ServingInstance.objects.values_list("instance_id", flat=True)) == {"web-3", "web-4"},
             timeout=5, interval=0.05)
    serving_service._seen.stop()


@pytest.mark.django_db(transaction=True)
def test_a_failed_write_keeps_the_polls_for_the_next_and_a_newer_poll_wins(deployment, writer_stopped, monkeypatch):
    from django.db import OperationalError

    services.serving_instance_seen(deployment=deployment, instance_id="web-5", reported=1, told=1)
    real = serving_service._upsert_seen

    def database_away(entries):
        raise OperationalError("the database is restarting")

    monkeypatch.setattr(serving_service, "_upsert_seen", database_away)
    with pytest.raises(OperationalError):
        services.serving_seen_flush()
    assert not ServingInstance.objects.exists()
    services.serving_instance_seen(deployment=deployment, instance_id="web-5", reported=2, told=2)
    monkeypatch.setattr(serving_service, "_upsert_seen", real)

    assert services.serving_seen_flush() == 1
    seen = ServingInstance.objects.get()
    assert (seen.instance_id, seen.version_reported, seen.version_told) == ("web-5", 2, 2)


@pytest.mark.django_db(transaction=True)
def test_polls_of_a_deployment_deleted_since_do_not_keep_the_rest_from_being_written(deployment, writer_stopped):
    serving_service._seen.record((deployment.pk + 10_000, "ghost"), 1, 1, timezone.now())
    services.serving_instance_seen(deployment=deployment, instance_id="web-6", reported=1, told=1)

    services.serving_seen_flush()

    assert list(ServingInstance.objects.values_list("instance_id", flat=True)) == ["web-6"]
    assert services.serving_seen_flush() == 0  # the ghost's poll is not retried for ever
