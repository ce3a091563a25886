"""The serving contract (docs/serving.md): which version an instance should serve, its signed model file, and
the public key to check the signature with. The deployment's ingestion token authenticates the serving process.

GET /deployments/{slug}/serving is a long poll: with If-None-Match equal to the current ETag it waits up to
`wait` seconds on this process's serving watch (dashboard/serving_watch.py) and answers 304 if nothing changed,
or 200 as soon as an approval or rollback commits. The request's database connection is closed while it waits,
so a fleet of waiting polls holds threads (gunicorn gthread, docker/entrypoint.sh), not database connections.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema
from ninja.decorators import decorate_view
from ninja.errors import HttpError
from pydantic import Field

from dashboard.api.auth import DeploymentToken, deployment_for_token
from dashboard.api.errors import error_responses
from dashboard.serving_watch import watch
from monitoring import selectors, services, signing, storage
from monitoring.models import ApiToken, Deployment

router = Router(tags=["serving"])
log = logging.getLogger(__name__)

# A fleet polls often and mostly hears "nothing changed" (304): that answer comes from this process's memory. The
# token and the serving state are cached for CACHE_SECONDS, and only while the serving watch is connected (so it
# would hear a change) and has heard none: for the state, none for its deployment; for the token, no revocation
# (token_revoke NOTIFYs at commit and the watch bumps its epoch, the token cache's tag), so a revoked token is
# refused as soon as its commit is heard, and a waiting poll re-checks its token when the epoch moves.
# Never inside a transaction (the tests' requests), where a change is not yet announced.
CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
_tokens: dict[bytes, tuple[int, float, ApiToken]] = {}
_states: dict[int, tuple[tuple[int, int], float, selectors.ServingState]] = {}
_cache_lock = threading.Lock()
_refreshing: set[tuple[int, Any]] = set()


def _caching() -> bool:
    return not connection.in_atomic_block and watch.connected.is_set()


def _cached(cache: dict, key: Any, tag: Any, load: Callable[[], Any]) -> Any:
    """cache[key] if it was stored under `tag` less than CACHE_SECONDS ago, else load() (and store it).

    When an entry expires under a fleet's polls, one thread reloads it and the others answer from the expired
    entry meanwhile (it is still the right one: a change of tag, i.e. a serving change, is never answered stale).
    Without that, 200 threads would all query the database in the same millisecond."""
    hit = cache.get(key)
    flight = (id(cache), key)
    if hit is not None and hit[0] == tag:
        if hit[1] > time.monotonic():
            return hit[2]
        with _cache_lock:
            busy = flight in _refreshing
            _refreshing.add(flight)
        if busy:
            return hit[2]
    try:
        value = load()
    finally:
        with _cache_lock:
            _refreshing.discard(flight)
    with _cache_lock:
        if len(cache) >= _CACHE_MAX:
            cache.clear()  # a bound, not a policy: forgetting costs one query per poller
        cache[key] = (tag, time.monotonic() + CACHE_SECONDS, value)
    return value


class ServingToken(DeploymentToken):
    """The deployment's ingestion token, remembered for CACHE_SECONDS (see above)."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        watch.start()
        if not _caching():
            return super().authenticate(request, token)
        load = super().authenticate
        # The epoch is taken before the load: a revocation committed meanwhile tags the entry stale at once.
        return _cached(_tokens, hashlib.sha256(token.encode()).digest(), watch.epoch, lambda: load(request, token))


serving_token = ServingToken()


def _recheck_token(request: HttpRequest) -> None:
    """401 (TokenRejected) if the request's token is no longer live."""
    serving_token(request)


def _releases_connection(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Close the request's database connection when it is done: a fleet's polls must not leave one open per
    gunicorn thread (workers × threads can exceed Postgres's max_connections); most of them opened none."""

    @wraps(view)
    def released(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return released

SERVING_VERSION_HEADER = "X-Watchkeeper-Serving-Version"


class ServingModelOut(Schema):
    url: str = Field(description="Absolute URL of the version's model file")
    sha256: str = Field(description="64 lower-case hex")
    size: int
    signature: str = Field(description="Ed25519 over b'watchkeeper-model-v1\\n' + sha256 hex, base64 (standard)")
    key_id: str = Field(description="The signing key's id: first 16 hex of sha256(raw public key)")


class ServingOut(Schema):
    deployment: str
    instance: str
    version: int
    model: ServingModelOut
    feature_names: list[str]
    classes: list[str]
    poll_after: int = Field(description="Seconds to wait before the next poll")


class SigningKeyOut(Schema):
    algorithm: str = "ed25519"
    key_id: str
    public_key: str = Field(description="The 32 raw public-key bytes, base64 (standard)")
    pem: str = Field(description="The public key as SubjectPublicKeyInfo PEM")


def _reported_version(request: HttpRequest) -> int | None:
    raw = request.headers.get(SERVING_VERSION_HEADER)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise services.ValidationFailed(
            f"{SERVING_VERSION_HEADER} must be the version number this instance serves, like 3.",
            errors=[{"field": SERVING_VERSION_HEADER, "message": "not an integer"}],
        ) from None


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return etag in candidates or "*" in candidates


def _model_url(request: HttpRequest, slug: str, number: int) -> str:
    # Relative to where this router is mounted, so it survives a re-mount of the API.
    base = request.path.rsplit(f"deployments/{slug}/serving", 1)[0]
    return request.build_absolute_uri(f"{base}deployments/{slug}/versions/{number}/model")


def _current(deployment: Deployment, since: tuple[int, int]) -> selectors.ServingState:
    if _caching():
        state = _cached(_states, deployment.pk, since, lambda: selectors.serving_state(deployment=deployment))
    else:
        state = selectors.serving_state(deployment=deployment)
    if state.refusal is not None:
        status, detail = state.refusal
        raise HttpError(status, detail)
    return state


@router.get(
    "/deployments/{slug}/serving", auth=serving_token,
    response={200: ServingOut, 304: None, **error_responses(401, 403, 404, 422, 503)},
    summary="Which version this serving instance should run (long poll)",
)
@decorate_view(_releases_connection)
def serving(
    request: HttpRequest,
    slug: str,
    instance: str = Query(..., min_length=1, max_length=200, description="This serving process's id, stable across polls"),
    wait: int = Query(0, ge=0, le=60, description="With If-None-Match: seconds to wait for a change before a 304"),
) -> HttpResponse | dict:
    """Answers 200 with the version to serve and an `ETag`; with `If-None-Match` equal to it, waits up to `wait`
    seconds and answers 304, or 200 within a second of an approval or rollback. Send the version you serve in
    `X-Watchkeeper-Serving-Version`: the deployment page shows the fleet. 503 when the active version has no
    valid signature (it is never delivered unsigned)."""
    started = time.perf_counter()
    waited = 0.0
    deployment = deployment_for_token(request, slug)
    reported = _reported_version(request)
    if_none_match = request.headers.get("If-None-Match")
    deadline = time.monotonic() + wait
    while True:
        since = watch.generation(deployment.pk)
        state = _current(deployment, since)
        version, etag = state.for_instance(deployment.pk, instance)  # a rollout's candidate, or the active one
        remaining = deadline - time.monotonic()
        if not _etag_matches(if_none_match, etag) or remaining <= 0:
            break
        if not connection.in_atomic_block:
            connection.close()  # no connection held while waiting; the next query opens one
        wait_start = time.perf_counter()
        woken = watch.wait(deployment.pk, since, remaining)
        waited += time.perf_counter() - wait_start
        if woken and watch.generation(deployment.pk)[0] != since[0]:
            _recheck_token(request)  # the epoch moved: perhaps this poll's token was revoked while it waited
    assert version is not None
    services.serving_instance_seen(deployment=deployment, instance_id=instance, reported=reported, told=version.number)
    if _etag_matches(if_none_match, etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(content_type="application/json")
        response.content = ServingOut(
            deployment=deployment.slug, instance=instance, version=version.number,
            model=ServingModelOut(
                url=_model_url(request, slug, version.number), sha256=version.sha256, size=version.size_bytes,
                signature=version.signature, key_id=version.signing_key_id,
            ),
            feature_names=list(deployment.feature_names), classes=[str(c) for c in deployment.class_labels],
            poll_after=settings.SERVING_POLL_AFTER_SECONDS,
        ).model_dump_json()
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache"
    # The view's own time, without the long poll's wait (and without the time before the view ran: gunicorn's %(D)s
    # has that), so an operator can tell the endpoint's cost from the machine's queueing.
    app_ms = (time.perf_counter() - started - waited) * 1000
    response["Server-Timing"] = f"app;dur={app_ms:.2f}, wait;dur={waited * 1000:.0f}"
    return response


@router.get(
    "/deployments/{slug}/versions/{number}/model", auth=serving_token,
    response={200: None, 304: None, **error_responses(401, 403, 404, 500)}, summary="A signed version's ONNX file",
    openapi_extra={"responses": {200: {"description": "The ONNX bytes", "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}},
)
@decorate_view(_releases_connection)
def version_model(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """The ONNX bytes, with `ETag: "<sha256>"` and `Content-Digest: sha-256=:<base64>:` (RFC 9530). Only a version
    with a valid signature is delivered (404 otherwise); one whose stored file no longer matches its sha256 is
    never delivered (500, logged)."""
    deployment = deployment_for_token(request, slug)
    version = deployment.versions.filter(number=number).first()
    if version is None:
        raise services.NotFound(f"{deployment.name} has no version {number}.")
    valid, why = selectors.version_signature_valid(version)
    if not valid:
        raise services.NotFound(f"v{number} is not delivered: {why}")
    etag = f'"{version.sha256}"'
    if _etag_matches(request.headers.get("If-None-Match"), etag):
        response = HttpResponse(status=304)
    else:
        try:
            data = services.blob_read(version.sha256)
        except (storage.BlobIntegrityError, storage.BlobMissingError) as exc:
            log.error("refused to serve %s v%s: %s", deployment.slug, number, exc)
            raise HttpError(500, f"v{number}'s stored file does not match its recorded sha256; it is not served. "
                                 "An administrator must restore the file (the incident is logged).") from None
        response = HttpResponse(data, content_type="application/octet-stream")
        response["Content-Length"] = str(len(data))
        response["Content-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(version.sha256)).decode()}:"
        response["Content-Disposition"] = f'attachment; filename="{deployment.slug}-v{number}.onnx"'
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache"
    return response


@router.get("/signing-key", auth=None, response={200: SigningKeyOut, **error_responses(503)},
            summary="The public key that verifies model signatures")
def signing_key(request: HttpRequest) -> SigningKeyOut:
    """No authentication: a public key. Verify a model with
    `Ed25519PublicKey.from_public_bytes(raw).verify(signature, b"watchkeeper-model-v1\\n" + sha256_hex.encode())`."""
    try:
        info = signing.public_key_info(signing.signing_key().public_key())
    except signing.SigningKeyMissing as exc:
        raise HttpError(503, f"This server has no signing key configured: {exc}") from None
    return SigningKeyOut(key_id=info.key_id, public_key=base64.b64encode(info.raw).decode(), pem=info.pem)
