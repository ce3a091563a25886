"""What a deployment's serving processes should run, and the fleet that polls for it."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.utils import timezone

from monitoring import signing
from monitoring.models import Deployment, EvaluationRun, ModelVersion, Rollout, ServingInstance, ShadowReplay
from monitoring.rollout.assignment import canary_instances, serves_candidate

LIVE_ROLLOUT_STATES = (Rollout.State.RUNNING, Rollout.State.PAUSED)
# An instance that has not polled for this long is shown apart, as gone quiet, and is not ranked for a canary.
FLEET_QUIET_AFTER = timedelta(minutes=10)
# Above this many live instances the hash alone gives each stage its share; ranking is for small fleets.
MAX_RANKED_INSTANCES = 10_000


@dataclass(frozen=True)
class ServingState:
    """The version to serve and its ETag, or why none can be served (`refusal`: HTTP status and a message)."""

    version: ModelVersion | None
    etag: str = ""
    refusal: tuple[int, str] | None = None
    # A live rollout's candidate, served to the instances whose stable hash falls under its share (issue 14).
    candidate: ModelVersion | None = None
    candidate_share: float = 0.0
    candidate_etag: str = ""
    # The live instances are placed by rank, so exactly ceil(share × n) of them serve the candidate (assignment.py):
    # the hash alone would put 3 of 10 on a 10 % stage as often as 1. An instance not yet seen goes by its hash.
    ranked: frozenset[str] = frozenset()
    canaries: frozenset[str] = frozenset()

    def for_instance(self, deployment_id: int, instance_id: str) -> tuple[ModelVersion | None, str]:
        """(the version this instance should serve, its ETag)."""
        if self.candidate is None:
            return self.version, self.etag
        if instance_id in self.ranked:
            on_candidate = instance_id in self.canaries
        else:
            on_candidate = serves_candidate(deployment_id, instance_id, self.candidate_share)
        return (self.candidate, self.candidate_etag) if on_candidate else (self.version, self.etag)


@lru_cache(maxsize=4096)
def _verified(public_raw: bytes, sha256_hex: str, signature_b64: str) -> bool:
    # Cached: the 304 path checks the active version on every poll, and its signature does not change.
    return signing.signature_valid(Ed25519PublicKey.from_public_bytes(public_raw), sha256_hex, signature_b64)


def version_signature_valid(version: ModelVersion) -> tuple[bool, str]:
    """(valid, why not): signed by the current key, and the signature checks out."""
    try:
        info = signing.public_key_info(signing.signing_key().public_key())
    except signing.SigningKeyMissing as exc:
        return False, f"The server has no signing key, so it serves no model: {exc}"
    if not version.signature:
        return False, f"v{version.number} is not signed; run `manage.py sign_versions`."
    if version.signing_key_id != info.key_id or not _verified(info.raw, version.sha256, version.signature):
        return False, (f"v{version.number}'s signature does not verify with the current key ({info.key_id}); "
                       "after a key rotation run `manage.py sign_versions --resign`.")
    return True, ""


def serving_state(*, deployment: Deployment) -> ServingState:
    version = deployment.active_version()
    if version is None:
        return ServingState(None, refusal=(404, f"{deployment.name} has no active version to serve yet."))
    valid, why = version_signature_valid(version)
    if not valid:
        return ServingState(version, refusal=(503, why))
    rollout = Rollout.objects.filter(deployment=deployment, state__in=LIVE_ROLLOUT_STATES).select_related("candidate").first()
    candidate, share, candidate_etag, ranked, canaries = None, 0.0, "", frozenset[str](), frozenset[str]()
    # An unsigned candidate is never delivered: its share stays on the active version.
    if rollout is not None and version_signature_valid(rollout.candidate)[0]:
        candidate, share, candidate_etag = rollout.candidate, rollout.share, _etag(deployment, rollout.candidate)
        live = list(ServingInstance.objects.filter(
            deployment=deployment, last_seen__gte=timezone.now() - FLEET_QUIET_AFTER
        ).values_list("instance_id", flat=True)[:MAX_RANKED_INSTANCES + 1])
        if len(live) <= MAX_RANKED_INSTANCES:
            ranked, canaries = frozenset(live), canary_instances(deployment.pk, live, share)
    return ServingState(version, etag=_etag(deployment, version), candidate=candidate, candidate_share=share,
                        candidate_etag=candidate_etag, ranked=ranked, canaries=canaries)


def _etag(deployment: Deployment, version: ModelVersion) -> str:
    tag = hashlib.sha256(f"{deployment.pk}:{version.number}:{version.sha256}:{version.signature}".encode()).hexdigest()
    return f'"v{version.number}-{tag[:24]}"'




@dataclass(frozen=True)
class Fleet:
    instances: list[ServingInstance]
    live: int = 0
    quiet: int = 0
    # {version number or None: count} over live instances, by the version they report (else were told).
    by_version: list[tuple[int | None, int]] = field(default_factory=list)
    last_seen: datetime | None = None


def serving_fleet(*, deployment: Deployment, now: datetime | None = None, limit: int = 200) -> Fleet:
    now = now or timezone.now()
    instances = list(ServingInstance.objects.filter(deployment=deployment).order_by("-last_seen")[:limit])
    live = [i for i in instances if now - i.last_seen <= FLEET_QUIET_AFTER]
    counts = Counter(i.version_reported if i.version_reported is not None else i.version_told for i in live)
    by_version = sorted(counts.items(), key=lambda kv: -(kv[0] or 0))
    return Fleet(
        instances=instances, live=len(live), quiet=len(instances) - len(live), by_version=by_version,
        last_seen=instances[0].last_seen if instances else None,
    )


def shadow_replay_for(*, version: ModelVersion) -> ShadowReplay | None:
    return ShadowReplay.objects.filter(candidate=version).first()


def served_by_version(*, deployment: Deployment) -> EvaluationRun | None:
    """The latest labelled-production evaluation whose window more than one version served (its metrics hold
    `served_by_version`: what each version's logged predictions scored), if it is the latest one at all."""
    run = (
        EvaluationRun.objects.filter(deployment=deployment, source=EvaluationRun.Source.PRODUCTION)
        .latest_succeeded()
    )
    return run if run is not None and run.metrics.get("served_by_version") else None
