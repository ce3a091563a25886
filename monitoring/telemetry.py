"""Watchkeeper's own Prometheus series: the counters and histograms each process adds to as it works.

Plain prometheus_client objects, no Django: the web (requests), the domain (ingested rows) and the workers
(tasks, notification deliveries) all count here. Under gunicorn and Celery each process writes its own
mmap'd file in PROMETHEUS_MULTIPROC_DIR (set by docker/entrypoint.sh before anything imports this), and
/metrics sums the files at scrape (dashboard/views/metrics.py). Gauges that describe the fleet (per-deployment
figures, queue depths, the indexing backlog) are not here: they are read at scrape, by custom collectors.

Every label below has a bounded set of values: route names (never raw paths), methods, status codes, task
names, channel kinds. Nothing names a user, a token or a row.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Request latencies from 5 ms (a probe) to 60 s (a serving long poll, or a large upload).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Tasks run from milliseconds (an index run) to an hour or two (a retraining job's hard limit).
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 7200.0)

http_requests = Counter(
    "watchkeeper_http_requests", "HTTP requests answered, by route name, method and status code",
    ["route", "method", "status"],
)
http_request_duration = Histogram(
    "watchkeeper_http_request_duration_seconds", "Time to answer an HTTP request, by route name and method",
    ["route", "method"], buckets=REQUEST_BUCKETS,
)
ingest_rows = Counter(
    "watchkeeper_ingest_rows",
    "Rows sent to ingestion, by kind (predictions, labels) and outcome (accepted, rejected)",
    ["kind", "outcome"],
)
task_runs = Counter(
    "watchkeeper_task_runs", "Celery task runs finished, by task and outcome (succeeded, failed, retried)",
    ["task", "outcome"],
)
task_failures = Counter("watchkeeper_task_failures", "Celery task runs that raised, by task", ["task"])
task_duration = Histogram(
    "watchkeeper_task_duration_seconds", "Celery task run time, by task", ["task"], buckets=TASK_BUCKETS,
)
notification_deliveries = Counter(
    "watchkeeper_notification_deliveries",
    "Notification delivery attempts, by channel kind and outcome (sent, retrying, failed)",
    ["channel_kind", "outcome"],
)
notification_failures = Counter(
    "watchkeeper_notification_failures", "Notification delivery attempts that failed, by channel kind",
    ["channel_kind"],
)

INGEST_KINDS = ("predictions", "labels")


def ingest_counted(*, kind: str, accepted: int = 0, rejected: int = 0) -> None:
    if accepted:
        ingest_rows.labels(kind=kind, outcome="accepted").inc(accepted)
    if rejected:
        ingest_rows.labels(kind=kind, outcome="rejected").inc(rejected)
