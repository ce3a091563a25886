"""`make demo`'s simulated fleet: a few serving instances per demo deployment, each a real
`watchkeeper_client.Deployment(...).model()` in its own thread, with light traffic from the deployment's own
scikit-learn dataset and, later, the true labels of some of it.

Approve a candidate on a deployment page and, within a second or two, its instances swap to the new version:
the page's fleet panel shows each instance and the version it serves, and var/log/fleet.log says so too.
Only the client library is used here (no Django), as in a real serving process.

    python docker/demo_fleet.py --url http://127.0.0.1:8000 --tokens var/demo-fleet-tokens [--instances N]
"""

from __future__ import annotations

import argparse
import logging
import random
import secrets
import signal
import threading
from pathlib import Path

import numpy as np
import watchkeeper_client
from sklearn.datasets import load_breast_cancer, load_digits, load_wine

# The demo deployments (workers/demo.py) and the data their models were trained on; their classes are the
# datasets' target names.
DATASETS = {"digits-mlp": load_digits, "tumour-logreg": load_breast_cancer, "wine-forest": load_wine}
# The tumour deployment is the demo's rollout story (workers/demo.py: two candidates wait there): ten instances,
# so its stages are visible in the fleet panel as 1, then 5, then 10 instances on the candidate. The others have 2.
FLEET_SIZE = {"tumour-logreg": 10}
LABEL_SHARE = 0.3  # of the rows served, how many get a true label later (about)
LABELS_EVERY = 30.0  # seconds between an instance's label batches

log = logging.getLogger("demo_fleet")


def read_tokens(path: Path) -> dict[str, str]:
    """{slug: token} from lines "slug token" (written by docker/demo.sh, mode 600)."""
    tokens = {}
    for line in path.read_text().splitlines():
        slug, _, token = line.strip().partition(" ")
        if slug and token:
            tokens[slug] = token
    return tokens


def serve(*, url: str, token: str, slug: str, instance: str, rate: float, stop: threading.Event) -> None:
    bunch = DATASETS[slug]()
    X = bunch.data.astype(np.float32)
    truth = [str(bunch.target_names[t]) for t in bunch.target]
    rng = random.Random(instance)
    # Prediction ids are unique per deployment: a restarted fleet (make stop && make demo, same database) must not
    # repeat the last run's, or every batch is refused as already stored.
    run = secrets.token_hex(4)
    wk = watchkeeper_client.Deployment(url, token, slug, instance=instance)
    model = None
    while model is None and not stop.is_set():
        try:
            model = wk.model(poll_wait=30, flush_interval=2.0)
        except watchkeeper_client.WatchkeeperError as exc:  # not up yet: a real service would retry too
            log.warning("%s: no model yet (%s); retrying in 5 s", instance, exc)
            stop.wait(5)
    if model is None:
        return
    log.info("%s: serving v%s", instance, model.version)
    served, n, pending = model.version, 0, {}
    next_labels = LABELS_EVERY * rng.uniform(0.5, 1.0)
    clock = 0.0
    while not stop.is_set():
        rows = rng.sample(range(len(X)), rng.randint(1, 6))
        ids = [f"{instance}-{run}-{n + i}" for i in range(len(rows))]
        n += len(rows)
        result = model.predict(X[rows], ids=ids)
        if result.version != served:
            log.info("%s: now serving v%s (was v%s)", instance, result.version, served)
            served = result.version
        pending.update({i: truth[r] for i, r in zip(ids, rows) if rng.random() < LABEL_SHARE})
        pause = rng.expovariate(rate)
        stop.wait(pause)
        clock += pause
        if clock >= next_labels and pending:
            clock, next_labels = 0.0, LABELS_EVERY
            try:
                if model.flush(timeout=10):  # a label needs its prediction stored first
                    wk.labels(pending)
                    pending = {}
            except watchkeeper_client.WatchkeeperError as exc:
                log.warning("%s: labels not sent (%s)", instance, exc)
                pending = {}
    stats = model.stats
    wk.close(timeout=10)
    log.info("%s: stopped; %s predictions stored, %s dropped", instance, stats.sent_rows, stats.dropped_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--tokens", type=Path, default=Path("var/demo-fleet-tokens"))
    parser.add_argument("--instances", type=int, default=None,
                        help="instances per deployment (default: 10 for tumour-logreg, 2 for the others)")
    parser.add_argument("--rate", type=float, default=1.0, help="predict calls per second per instance, about")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = []
    for slug, token in read_tokens(args.tokens).items():
        if slug not in DATASETS:
            continue
        for k in range(1, (args.instances or FLEET_SIZE.get(slug, 2)) + 1):
            instance = f"{slug.split('-')[0]}-{k}"
            thread = threading.Thread(
                target=serve, name=instance, daemon=True,
                kwargs={"url": args.url, "token": token, "slug": slug, "instance": instance, "rate": args.rate, "stop": stop},
            )
            thread.start()
            threads.append(thread)
    log.info("fleet: %d instances", len(threads))
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(15)


if __name__ == "__main__":
    main()
