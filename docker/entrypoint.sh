#!/usr/bin/env bash
# How each Watchkeeper process starts. The Makefile and the container image both call this,
# so a demo on a laptop and a deployment run the same commands with the same settings.
set -euo pipefail
cd "$(dirname "$0")/.."

role=${1:?usage: entrypoint.sh migrate|web|worker|maintenance-worker|beat|seed}
shift || true

case "$role" in
  migrate)
    python manage.py migrate --noinput
    python manage.py collectstatic --noinput -v0
    ;;
  web)
    exec gunicorn dashboard.wsgi:application \
      --bind "${BIND:-127.0.0.1:${PORT:-8000}}" --workers "${WEB_WORKERS:-2}" --threads 4 \
      --timeout 120 --access-logfile - "$@"
    ;;
  worker)
    # Evaluations and drift checks: short tasks, many deployments.
    exec celery -A dashboard worker --queues default --concurrency "${WORKER_CONCURRENCY:-2}" \
      --hostname "default@%h" --loglevel INFO "$@"
    ;;
  maintenance-worker)
    # Compression and retraining: long, memory-hungry jobs, one at a time per process.
    exec celery -A dashboard worker --queues maintenance --concurrency "${MAINTENANCE_CONCURRENCY:-1}" \
      --prefetch-multiplier 1 --hostname "maintenance@%h" --loglevel INFO "$@"
    ;;
  beat)
    mkdir -p var
    exec celery -A dashboard beat --schedule var/celerybeat-schedule --loglevel INFO "$@"
    ;;
  seed)
    exec python manage.py seed_demo "$@"
    ;;
  *)
    echo "unknown role: $role" >&2
    exit 2
    ;;
esac
