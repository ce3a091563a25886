"""gunicorn's settings beyond the command line in docker/entrypoint.sh (`web`): the metrics and log hooks.

Each web worker writes its series to its own files in PROMETHEUS_MULTIPROC_DIR (the entrypoint makes that
directory empty before gunicorn starts); when a worker exits, child_exit tells prometheus_client, so its
live gauges stop counting while its counters stay in the sums /metrics serves.
"""

import os

from dashboard.logs import logging_config


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# gunicorn's own lines (starting, a worker timed out) in the app's format: JSON lines under LOG_FORMAT=json.
# Its access log stays off: the app logs each request by route name (dashboard/request_telemetry.py).
logconfig_dict = logging_config(log_format=os.environ.get("LOG_FORMAT", "text").lower(), level="INFO") | {
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}
