#!/usr/bin/env bash
# How each Watchkeeper process starts. The Makefile and the container image both call this,
# so a demo on a laptop and a deployment run the same commands with the same settings.
set -euo pipefail
cd "$(dirname "$0")/.."

role=${1:?usage: entrypoint.sh init-secrets|migrate|web|worker|maintenance-worker|beat|notifier|seed|createadmin|manage}
shift || true

# Watchkeeper's own metrics (GET /metrics): each role's processes write their series into a directory of their
# own under METRICS_DIR (compose shares it between containers, whose pids may collide: hence one per role),
# emptied here so a restarted role starts from zero, as Prometheus expects of a restarted process.
metrics_dir() {
  export METRICS_DIR=${METRICS_DIR:-$PWD/var/metrics}
  export PROMETHEUS_MULTIPROC_DIR="$METRICS_DIR/$1"
  rm -rf "$PROMETHEUS_MULTIPROC_DIR"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
}

case "$role" in
  init-secrets)
    # Compose's first step: the secret key and the two database passwords, made once into the secrets volume
    # (SECRETS_DIR) and kept from then on. Nothing is read from the clone, so `docker compose up` works from a
    # fresh one.
    dir=${SECRETS_DIR:-/secrets}
    mkdir -p "$dir"
    umask 077
    for name in secret_key postgres_password app_db_password metrics_token grafana_admin_password; do
      if [ ! -s "$dir/$name" ]; then
        python -c 'import secrets; print(secrets.token_urlsafe(48))' >"$dir/$name.tmp"
        mv "$dir/$name.tmp" "$dir/$name"
        echo "created $dir/$name"
      fi
    done
    if [ ! -s "$dir/signing_key.pem" ]; then
      # The Ed25519 key that signs model versions (docs/serving.md: back it up; rotating it means re-signing).
      python -c 'import sys; from pathlib import Path; from monitoring.signing import key_file_create; key_file_create(Path(sys.argv[1]))' \
        "$dir/signing_key.pem"
      echo "created $dir/signing_key.pem"
    fi
    if [ "$(id -u)" = 0 ]; then
      chown "${APP_UID:-1000}" "$dir"/signing_key.pem
      chmod 0400 "$dir"/signing_key.pem
      # Readable by the app's user (uid 1000, docker/Dockerfile) and by the postgres image's (gid 999) only.
      chown "${APP_UID:-1000}:${POSTGRES_GID:-999}" "$dir"/secret_key "$dir"/postgres_password "$dir"/app_db_password
      chmod 0440 "$dir"/secret_key "$dir"/postgres_password "$dir"/app_db_password
      # The scrape token: for the app's user and the Prometheus image's (nobody, gid 65534), which sends it.
      chown "${APP_UID:-1000}:${PROMETHEUS_GID:-65534}" "$dir"/metrics_token
      chmod 0440 "$dir"/metrics_token
      # Grafana's admin password: for the Grafana image's user (uid 472, in group 0) alone.
      chown "${APP_UID:-1000}:0" "$dir"/grafana_admin_password
      chmod 0440 "$dir"/grafana_admin_password
      chmod 0755 "$dir"
    fi
    ;;
  migrate)
    # The owner migrates and grants; every other process connects as the app role (DATABASE_URL), which may
    # only SELECT and INSERT on the audit log (monitoring/management/commands/grant_app_role.py).
    if [ -n "${MIGRATE_DATABASE_URL:-}" ]; then
      app_url=$DATABASE_URL
      app_password_file=${DATABASE_PASSWORD_FILE:-}
      export DATABASE_URL=$MIGRATE_DATABASE_URL DATABASE_PASSWORD_FILE=${MIGRATE_DATABASE_PASSWORD_FILE:-} DATABASE_PASSWORD=
      python manage.py migrate --noinput
      python manage.py grant_app_role --app-url "$app_url" ${app_password_file:+--password-file "$app_password_file"}
    else
      python manage.py migrate --noinput
    fi
    # Versions registered before signing existed, or while no key was set, are signed now (docs/serving.md).
    python manage.py sign_versions --if-key
    python manage.py collectstatic --noinput -v0
    ;;
  web)
    # gthread: a serving long poll (GET .../serving?wait=, up to 60 s) holds a thread, not a database connection,
    # so each worker keeps WEB_THREADS of them; workers × threads bounds the requests in flight at once, long polls
    # included (docs/serving.md, "Capacity"). Idle keep-alive connections wait in gthread's selector, not a thread.
    # No gunicorn access log: it prints raw paths (an acknowledge link's is a credential); the app logs each
    # request by route name instead. docker/gunicorn.conf.py: the metrics hook and gunicorn's log format.
    metrics_dir web
    exec gunicorn dashboard.wsgi:application --config docker/gunicorn.conf.py \
      --bind "${BIND:-127.0.0.1:${PORT:-8000}}" --workers "${WEB_WORKERS:-2}" \
      --worker-class gthread --threads "${WEB_THREADS:-100}" \
      --timeout 120 "$@"
    ;;
  worker)
    # Evaluations and drift checks: short tasks, many deployments.
    metrics_dir worker
    exec celery -A dashboard worker --queues default --concurrency "${WORKER_CONCURRENCY:-2}" \
      --hostname "default@%h" --loglevel INFO "$@"
    ;;
  maintenance-worker)
    # Compression and retraining: long, memory-hungry jobs, one at a time per process.
    metrics_dir maintenance-worker
    exec celery -A dashboard worker --queues maintenance --concurrency "${MAINTENANCE_CONCURRENCY:-1}" \
      --prefetch-multiplier 1 --hostname "maintenance@%h" --loglevel INFO "$@"
    ;;
  beat)
    mkdir -p var
    exec celery -A dashboard beat --schedule var/celerybeat-schedule --loglevel INFO "$@"
    ;;
  notifier)
    # The embedded mode's stand-in for beat + worker in alert delivery: the sweep every 15 s, in process.
    metrics_dir notifier
    exec python manage.py deliver_notifications --every 15 "$@"
    ;;
  seed)
    exec python manage.py seed_demo "$@"
    ;;
  createadmin)
    # The first approver, with a password typed twice on the terminal (checked by the password validators):
    #   docker compose -f docker/compose.yaml run --rm web createadmin alice --team "ML Platform"
    exec python manage.py create_user --role approver --prompt "$@"
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  *)
    echo "unknown role: $role" >&2
    exit 2
    ;;
esac
