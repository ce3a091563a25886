"""Which serving instances get the candidate: a stable hash of the instance id, so an instance never flaps.

Each instance has a fixed bucket in [0, BUCKETS); it serves the candidate while bucket < share × BUCKETS. The
shares of a plan only grow, so an instance on the candidate at 10 % stays on it at 50 %.

A small fleet would be far off its share that way (two instances at 10 %: 81 % of the time neither; ten: three as
often as one in fourteen), so the known live instances are ranked by bucket and exactly the first ceil(share × n) of
them serve the candidate; the hash decides only for an instance not seen yet. The ranking is the hash's order, so
it also only grows with the share.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

# 10,000 buckets: a share is honoured to 0.01 % (the hash is uniform; the sampling error over n instances,
# about sqrt(p(1-p)/n), is what a fleet sees: ±1.6 points at 10 % over 1,000 instances, 2 sigma).
BUCKETS = 10_000


def instance_bucket(deployment_id: int, instance_id: str) -> int:
    # Salted by the deployment, so the same host name is not always the canary of every deployment.
    digest = hashlib.sha256(f"{deployment_id}:{instance_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def serves_candidate(deployment_id: int, instance_id: str, share: float) -> bool:
    if share <= 0:
        return False
    if share >= 1:
        return True
    return instance_bucket(deployment_id, instance_id) < round(share * BUCKETS)


def canary_instances(deployment_id: int, live_instance_ids: Iterable[str], share: float) -> frozenset[str]:
    """The first ceil(share × n) of the live instances by bucket: the candidate's share of a small fleet."""
    if share <= 0:
        return frozenset()
    ranked = sorted(live_instance_ids, key=lambda instance_id: instance_bucket(deployment_id, instance_id))
    return frozenset(ranked[: math.ceil(share * len(ranked))])
