#!/usr/bin/env bash
# `make demo`: migrate, seed, start web + workers + beat in the background, and print where to log in.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s.%N)
mkdir -p var/log var/run

eval "$(python3 docker/services.py)"
export MEDIA_ROOT=${MEDIA_ROOT:-$PWD/var/media}
export DEBUG=${DEBUG:-false}
if [ -z "${SECRET_KEY:-}" ] && [ -z "${SECRET_KEY_FILE:-}" ]; then
  [ -s var/secret_key ] || python3 -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key
  chmod 600 var/secret_key
  export SECRET_KEY_FILE=$PWD/var/secret_key
fi

# /metrics wants a bearer token (docs/operations.md, "Monitoring Watchkeeper"): one made once, kept under var/.
if [ -z "${METRICS_TOKEN:-}" ] && [ -z "${METRICS_TOKEN_FILE:-}" ]; then
  [ -s var/metrics-token ] || (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > var/metrics-token)
  export METRICS_TOKEN_FILE=$PWD/var/metrics-token
fi

# Alerts go to local receivers (docker/demo_receivers.py): a mail catcher and a signed-webhook receiver.
export ALERT_ALLOW_PRIVATE_URLS=true EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend
export EMAIL_HOST=127.0.0.1 EMAIL_PORT=${DEMO_SMTP_PORT:-1025} PUBLIC_URL=${PUBLIC_URL:-http://127.0.0.1:${PORT:-8000}}

# The Ed25519 key that signs every model version (docs/serving.md), made once and kept under var/.
export SIGNING_KEY_FILE=${SIGNING_KEY_FILE:-$PWD/var/signing-key.pem}
docker/entrypoint.sh manage signing_key_create "$SIGNING_KEY_FILE"

bash docker/stop.sh >/dev/null 2>&1 || true
docker/entrypoint.sh migrate
# The one place the weak demo passwords are set: a local demo on 127.0.0.1 (the product owner's choice).
docker/entrypoint.sh seed --demo-passwords
docker/entrypoint.sh manage demo_alerting --webhook-url "http://127.0.0.1:${DEMO_WEBHOOK_PORT:-8025}/" \
  --email oncall@demo.local --secret-file var/demo-webhook-secret

start() {  # start ROLE in the background, logging to var/log/ROLE.log
  nohup docker/entrypoint.sh "$1" >"var/log/$1.log" 2>&1 &
  echo $! >"var/run/$1.pid"
}
nohup python docker/demo_receivers.py --smtp-port "${DEMO_SMTP_PORT:-1025}" --http-port "${DEMO_WEBHOOK_PORT:-8025}" \
  --secret-file var/demo-webhook-secret >var/log/receivers.log 2>&1 &
echo $! >var/run/receivers.pid
start web
if [ "$WATCHKEEPER_MODE" = full ]; then
  start worker
  start maintenance-worker
  start beat
else
  start notifier  # no beat or worker: alert delivery's sweep runs in its own small process
fi

url="http://127.0.0.1:${PORT:-8000}/"
for _ in $(seq 1 60); do
  # Ready (200) once the database and Redis answer and the workers have written their first heartbeat.
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('${url}readyz', timeout=2)" 2>/dev/null; then break; fi
  sleep 1
done
# The simulated fleet (docker/demo_fleet.py): serving instances that use the client library (client/), so an
# approval visibly reaches "production". Each run makes a token per deployment for it, kept in a mode-600 file.
(umask 077 && : >var/demo-fleet-tokens)
for slug in digits-mlp tumour-logreg wine-forest; do
  echo "$slug $(docker/entrypoint.sh manage create_api_token "$slug" --name "demo fleet" 2>/dev/null)" >>var/demo-fleet-tokens
done
nohup python docker/demo_fleet.py --url "${url%/}" --tokens var/demo-fleet-tokens >var/log/fleet.log 2>&1 &
echo $! >var/run/fleet.pid

elapsed=$(python3 -c "import time; print(f'{time.time() - $started:.0f}')")
python3 - "$url" <<'PY' || true
import json, sys, urllib.error, urllib.request
try:
    body = urllib.request.urlopen(sys.argv[1] + "readyz", timeout=5).read()
except urllib.error.HTTPError as exc:
    body = exc.read()
state = json.loads(body)
workers = state["workers"]
if workers.get("mode") == "in-process":
    workers = "in-process"
else:
    workers = f"{workers['count']} alive" + (f" on {', '.join(workers['queues'])}" if workers["queues"] else "")
print(f"ready: {state['status']} (database {state['database']['ok']}, broker {state['broker']['ok']}, workers {workers})")
PY
cat <<MSG

  Watchkeeper is up in ${elapsed}s ($WATCHKEEPER_MODE mode).
    URL:    $url
    Login:  demo / demo        (approver; also: operator / demo, viewer / demo)
    API:    ${url}api/v1/docs
    Logs:   var/log/   Stop: make stop
    Metrics: curl -H "Authorization: Bearer \$(cat var/metrics-token)" ${url}metrics
    Alerts: var/log/receivers.log (mail in var/mail/, webhooks in var/webhooks/)
    Fleet:  var/log/fleet.log  (serving instances through client/: 10 for tumour-logreg, 2 for the others)
    Try:    ${url}d/tumour-logreg/  "Roll out v3" (a good candidate): its stages advance in about 5 min;
            then "Roll out v4" (it predicts one class): the guards abort it within a minute or so, and one
            notification reaches the receivers above
MSG
