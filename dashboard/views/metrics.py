"""GET /metrics: Watchkeeper's own Prometheus series, for Prometheus only (docs/operations.md, "Monitoring
Watchkeeper").

Who may scrape: a bearer token (METRICS_TOKEN, or METRICS_TOKEN_FILE), compared in constant time, is the
default; METRICS_ALLOWED_NETS (CIDRs) narrows who may connect, on top of the token or instead of it. With
neither set the endpoint refuses everyone (403): a fresh install publishes nothing. A dashboard login opens
nothing here. A refusal says only that it is refused.

What a scrape returns: the counters and histograms every process writes (monitoring/telemetry.py), summed over
the processes' files under gunicorn and Celery (multiprocess mode), and figures read now: queue depths (LLEN),
and per-deployment gauges in a fixed number of queries (monitoring/selectors/fleet_metrics.py).
"""

from __future__ import annotations

import glob
import hashlib
import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Iterable, Iterator
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from dashboard.api.errors import problem
from dashboard.celery import redis_client
from dashboard.logins import client_ip
from monitoring.selectors.fleet_metrics import fleet_figures

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The queues the workers consume (settings.CELERY_TASK_ROUTES, docker/entrypoint.sh): Kombu's Redis
# transport keeps each as a list of that name.
QUEUES = ("default", "maintenance")


def _refused(status: int, detail: str) -> HttpResponse:
    response = problem(status, detail)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="watchkeeper-metrics"'
    return response


@lru_cache(maxsize=4)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in spec)


def _address_allowed(request: HttpRequest) -> bool:
    nets = _networks(tuple(settings.METRICS_ALLOWED_NETS))
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(address in net for net in nets)


def _token_matches(request: HttpRequest) -> bool:
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Digests of equal length, so compare_digest's time does not depend on where, or whether, the lengths differ.
    sent = hashlib.sha256(raw.strip().encode()).digest()
    wanted = hashlib.sha256(settings.METRICS_TOKEN.encode()).digest()
    return hmac.compare_digest(sent, wanted)


def refusal(request: HttpRequest) -> HttpResponse | None:
    """None when this request may scrape, else the answer that refuses it."""
    if not settings.METRICS_TOKEN and not settings.METRICS_ALLOWED_NETS:
        return _refused(403, "Metrics are not enabled: set METRICS_TOKEN (or METRICS_ALLOWED_NETS).")
    if settings.METRICS_ALLOWED_NETS and not _address_allowed(request):
        return _refused(403, "Metrics are not served to this address.")
    if settings.METRICS_TOKEN and not _token_matches(request):
        return _refused(401, "Metrics need 'Authorization: Bearer <METRICS_TOKEN>'.")
    return None


class ProcessFilesCollector(Collector):
    """The series of every process that wrote to the metrics directories, summed (prometheus_client's
    multiprocess mode, over several directories: docker/entrypoint.sh gives each role its own, since two
    containers' processes may share a pid)."""

    def __init__(self, directories: Iterable[str]) -> None:
        self.directories = list(directories)

    def collect(self) -> Iterable[Metric]:
        files = [path for directory in self.directories for path in sorted(glob.glob(os.path.join(directory, "*.db")))]
        return MultiProcessCollector.merge(files, accumulate=True)


class FleetCollector(Collector):
    """Figures read at scrape: the queues, the indexing backlog and every deployment's gauges."""

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        yield from self._queues()
        yield from self._deployments()
        took = GaugeMetricFamily("watchkeeper_metrics_collect_seconds", "Time this scrape spent reading the figures")
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("watchkeeper_queue_depth", "Tasks waiting in each Celery queue (Redis LLEN)", labels=["queue"])
        up = GaugeMetricFamily("watchkeeper_broker_up", "1 if the broker answered this scrape")
        if settings.CELERY_TASK_ALWAYS_EAGER:
            yield depth  # tasks run in-process: there are no queues
            return
        try:
            pipe = redis_client(settings.CELERY_BROKER_URL).pipeline(transaction=False)
            for queue in QUEUES:
                pipe.llen(queue)
            lengths = pipe.execute()
        except RedisError as exc:
            logger.warning("metrics: queue depths not read: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        for queue, length in zip(QUEUES, lengths):
            depth.add_metric([queue], int(length))
        up.add_metric([], 1)
        yield depth
        yield up

    def _deployments(self) -> Iterator[Metric]:
        figures = fleet_figures()
        families = {
            "accuracy": GaugeMetricFamily("watchkeeper_deployment_accuracy",
                                          "Latest accuracy of the active version, by evaluation source",
                                          labels=["deployment", "source"]),
            "f1": GaugeMetricFamily("watchkeeper_deployment_f1_macro",
                                    "Latest macro F1 of the active version, by evaluation source",
                                    labels=["deployment", "source"]),
            "drift": GaugeMetricFamily("watchkeeper_deployment_drift_share",
                                       "Share of features drifted in the newest drift report", labels=["deployment"]),
            "alerts": GaugeMetricFamily("watchkeeper_deployment_open_alerts",
                                        "Unresolved (open or acknowledged) alerts, by severity",
                                        labels=["deployment", "severity"]),
            "hour": GaugeMetricFamily("watchkeeper_deployment_predictions_last_hour",
                                      "Prediction rows received in the last hour", labels=["deployment"]),
            "lag": GaugeMetricFamily("watchkeeper_deployment_label_lag_seconds",
                                     "Age of the newest labelled prediction (absent: no labels yet)",
                                     labels=["deployment"]),
            "backlog": GaugeMetricFamily("watchkeeper_indexing_backlog_batches",
                                         "Stored batches waiting for the indexer", labels=["deployment"]),
            "backlog_rows": GaugeMetricFamily("watchkeeper_indexing_backlog_rows",
                                              "Rows in batches waiting for the indexer", labels=["deployment"]),
            "backlog_age": GaugeMetricFamily("watchkeeper_indexing_backlog_oldest_seconds",
                                             "Age of the oldest batch waiting for the indexer", labels=["deployment"]),
        }
        for figure in figures:
            slug = figure.slug
            for source, value in sorted(figure.accuracy.items()):
                families["accuracy"].add_metric([slug, source], value)
            for source, value in sorted(figure.f1_macro.items()):
                families["f1"].add_metric([slug, source], value)
            if figure.drift_share is not None:
                families["drift"].add_metric([slug], figure.drift_share)
            for severity in ("info", "warning", "critical"):  # zeros too, so an alert rule sees the series
                families["alerts"].add_metric([slug, severity], figure.open_alerts.get(severity, 0))
            families["hour"].add_metric([slug], figure.predictions_last_hour)
            if figure.label_lag_seconds is not None:
                families["lag"].add_metric([slug], figure.label_lag_seconds)
            families["backlog"].add_metric([slug], figure.backlog_batches)
            families["backlog_rows"].add_metric([slug], figure.backlog_rows)
            families["backlog_age"].add_metric([slug], figure.backlog_oldest_seconds)
        yield from families.values()


def metrics_directories() -> list[str]:
    """Where the processes write: every role's directory under METRICS_DIR, else this process's own."""
    if settings.METRICS_DIR:
        return sorted(path for path in glob.glob(os.path.join(settings.METRICS_DIR, "*")) if os.path.isdir(path))
    own = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    return [own] if own else []


def _registry() -> CollectorRegistry:
    directories = metrics_directories()
    if not directories:
        # One process (the dev server, tests): its own registry holds its counters.
        registry = CollectorRegistry()
        registry.register(_Default())
    else:
        registry = CollectorRegistry()
        registry.register(ProcessFilesCollector(directories))
    registry.register(FleetCollector())
    return registry


class _Default(Collector):
    """This process's own series, from prometheus_client's default registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if (refused := refusal(request)) is not None:
        return refused
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE)
