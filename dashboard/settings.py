"""Watchkeeper settings: one module, everything read from the environment.

See .env.example for every variable. In the embedded mode (WATCHKEEPER_EMBEDDED=true),
used by `make demo` when neither Postgres nor Redis can be reached, the database is
SQLite and Celery tasks run in-process.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

from dashboard.env import ConfigError, env_bool, env_int, env_list, env_str
from dashboard.integrations import sentry_init
from dashboard.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "insecure-dev-key-change-me" if DEBUG else None)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

EMBEDDED = env_bool("WATCHKEEPER_EMBEDDED", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "ninja",
    "monitoring",
    "dashboard",
]

MIDDLEWARE = [
    # First: the request id and log context cover everything below, and the metrics time it all.
    "dashboard.request_telemetry.RequestTelemetryMiddleware",
    # Next, so it sees a database error raised by any middleware below (sessions, the user) or a page.
    "dashboard.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "dashboard.middleware.ContentSecurityPolicyMiddleware",
    "dashboard.middleware.ApiDeprecationMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before anything reads a body (CSRF's check, in process_view, parses forms), after the user is known:
    # a body over its route's cap, or an anonymous one over the small cap, is a 413.
    "dashboard.middleware.RequestBodyLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "dashboard.middleware.UserTimezoneMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if EMBEDDED:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "var" / "watchkeeper.sqlite3")),
        }
    }
else:
    DATABASES = {
        "default": dj_database_url.parse(
            env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/watchkeeper"),
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
            conn_health_checks=True,
        )
    }
    # The password may come apart from the URL, from a secret file (DATABASE_PASSWORD_FILE), as compose does.
    # The app's role may only INSERT and SELECT on the audit log; `entrypoint.sh migrate` connects as the
    # owner instead (MIGRATE_DATABASE_URL) and grants the app role its rights (manage.py grant_app_role).
    DATABASES["default"]["PASSWORD"] = env_str("DATABASE_PASSWORD", DATABASES["default"].get("PASSWORD") or "")
    # Tests run in parallel sessions and CI against one server: each picks its own test database.
    DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_watchkeeper")}

# A request that finds the database out of reach (a restart, a failover) is a 503 telling the client to retry
# after this long (dashboard/api/errors.py, dashboard/middleware.py DatabaseUnavailableMiddleware). Each
# request checks its pooled connection first (conn_health_checks), so the first one after the database returns
# reconnects instead of failing on a dead socket.
DATABASE_RETRY_AFTER_SECONDS = env_int("DATABASE_RETRY_AFTER_SECONDS", 5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: a locked-out client is refused before ModelBackend spends a PBKDF2 hash on its guess.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "dashboard.staticfinders.PlotlyFinder",  # static/plotly/plotly.min.js, from the installed package
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names (css/app.3f2a….css) from `collectstatic`'s manifest, each with a .gz beside it: WhiteNoise
    # serves a hashed name with a ten-year, immutable Cache-Control, and the .gz to a client that accepts gzip
    # (plotly.min.js: 4.8 MB, 1.4 MB gzipped). `collectstatic` runs in `entrypoint.sh migrate` (so `make demo`),
    # in the image build (docker/Dockerfile) and once per test session (tests/conftest.py); without its manifest
    # a page cannot name its static files and fails.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))

# Every request body is capped before anything reads it (dashboard/middleware.py, RequestBodyLimitMiddleware):
# the upload routes at MAX_MODEL_UPLOAD_BYTES or MAX_UPLOAD_BYTES, every other route (the login page, forms,
# the JSON API) at MAX_REQUEST_BYTES, which is also Django's own limit on form fields and request.body.
# 32 MB: a full JSON batch (10,000 rows) of 64 features keyed by name is 22.5 MB (14 MB as lists).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 32 * 1024 * 1024)
# Uploads: ONNX files and multipart files stream to disk above FILE_UPLOAD_MAX_MEMORY_SIZE.
MAX_MODEL_UPLOAD_BYTES = env_int("MAX_MODEL_UPLOAD_BYTES", 200 * 1024 * 1024)

# Serving (docs/serving.md). The Ed25519 private key (PKCS8 PEM) that signs every version's sha256; without it
# no model is served. `make demo` creates var/signing-key.pem.
SIGNING_KEY_FILE = env_str("SIGNING_KEY_FILE", "")
# What a serving instance is told to wait between polls, and the longest long poll (`wait`) it may ask for.
SERVING_POLL_AFTER_SECONDS = env_int("SERVING_POLL_AFTER_SECONDS", 30)
# A poll that changes nothing updates its instance's last_seen at most this often.
SERVING_SEEN_WRITE_SECONDS = env_int("SERVING_SEEN_WRITE_SECONDS", 15)
# A shadow replay runs a new candidate over at most this many of the newest production rows of the last
# drift_window_hours: 200,000 rows of 30 features run through a small model in about a second.
SHADOW_REPLAY_MAX_ROWS = env_int("SHADOW_REPLAY_MAX_ROWS", 200_000)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# An uploaded model is first loaded and run on two rows in a limited child process (monitoring/smoke.py): it may
# add this much address space and take this long. 2 GiB is several times what a 200 MB model needs.
MODEL_SMOKE_MEMORY_BYTES = env_int("MODEL_SMOKE_MEMORY_BYTES", 2 * 1024 ** 3)
MODEL_SMOKE_TIMEOUT_SECONDS = env_int("MODEL_SMOKE_TIMEOUT_SECONDS", 30)
# Clock skew: a prediction timestamped more than this far past the server's clock is refused (422, naming the
# rows), whole batch, nothing stored (docs/ingestion.md). Five minutes covers ordinary NTP drift; a clock hours
# ahead would put rows in windows that have not happened yet, where every check reads them as "now".
INGEST_FUTURE_TOLERANCE_SECONDS = env_int("INGEST_FUTURE_TOLERANCE_SECONDS", 300)
MAX_PREDICTION_BATCH = env_int("MAX_PREDICTION_BATCH", 10_000)
# Labels are two short fields a row, so a batch may be larger (one COPY whatever its size).
MAX_LABEL_BATCH = env_int("MAX_LABEL_BATCH", 100_000)
# File uploads (CSV/Parquet) of predictions, labels or datasets: rows per file and bytes per request.
MAX_UPLOAD_ROWS = env_int("MAX_UPLOAD_ROWS", 2_000_000)
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 512 * 1024 * 1024)
# What the columns read from a file may take uncompressed and decoded, checked on a Parquet file's footer
# before anything is decoded (its pages expand without bound: one value repeated by run-length encoding).
# Twice MAX_UPLOAD_BYTES: a file of MAX_UPLOAD_ROWS rows of 64 float64 features (1.02 GB decoded) fits.
MAX_UPLOAD_UNCOMPRESSED_BYTES = env_int("MAX_UPLOAD_UNCOMPRESSED_BYTES", 2 * MAX_UPLOAD_BYTES)
# A batch whose columns take this many bytes or more is stored in the media store (MEDIA_ROOT, which every
# machine then shares), the rest in Postgres. 8 MB: about 100,000 rows of 20 features (a full JSON batch of
# 20 features is 1 MB).
BATCH_COLUMNS_IN_MEDIA_FROM_BYTES = env_int("BATCH_COLUMNS_IN_MEDIA_FROM_BYTES", 8 * 1024 * 1024)

# Celery: JSON only (tasks take ids), job state lives in our own tables, so no result backend.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# In-process tasks: the embedded demo, or a deployment without Redis. Slower pages, same results.
CELERY_TASK_ALWAYS_EAGER = EMBEDDED or env_bool("TASKS_IN_PROCESS", False)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis away (docs/operations.md, "Faults survived"). A web request that enqueues after its commit must not wait
# on it: 2 s to connect, 5 s for an answer (above the workers' 1 s BRPOP poll), one retry, and the robust
# on_commit logs the failure; the rows are stored and the beat's sweeps find the work. Workers and beat wait for
# Redis for as long as it takes (no retry cap: a worker that gave up after an hour would need a human).
# visibility_timeout: longer than the slowest maintenance job's hard limit, so Redis never redelivers a job
# still running.
REDIS_TIMEOUT_SECONDS = 2
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 2 * 3600,
    "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
    "socket_timeout": 5,
}
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_TIMEOUT_SECONDS
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_TASK_ROUTES = {"workers.tasks.run_maintenance_job_task": {"queue": "maintenance"}}
CELERY_TASK_DEFAULT_QUEUE = "default"
# Each worker keeps "<prefix>:<hostname>" alive in REDIS_URL (dashboard/celery.py); /readyz reads them.
WORKER_HEARTBEAT_KEY_PREFIX = "watchkeeper:worker"

# The cache holds login-failure counts (django-axes), so every web process sees the same counts: Redis, where
# the workers have it. CACHE_URL may name its own Redis database; by default it shares the broker's under its
# own key prefix (never call cache.clear(): Django's RedisCache clears with FLUSHDB, dropping queued tasks too).
# In the embedded demo and without Redis the counts go to the database instead (AXES_HANDLER below).
REDIS_CACHE = not (EMBEDDED or env_bool("TASKS_IN_PROCESS", False))
if not REDIS_CACHE:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env_str("CACHE_URL", REDIS_URL),
            "KEY_PREFIX": "wk-cache",
            # A login while Redis is away waits at most this long for its failure counter (dashboard/logins.py).
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS},
        }
    }

# Failed logins, counted in the cache (no database write per attempt) per (username, client address) and per
# client address: after LOGIN_FAILURE_LIMIT failures either is refused for LOGIN_COOLOFF_MINUTES, and each
# attempt while refused starts the wait again, so the lockout page can say exactly when to retry. Not per
# username alone: then anyone who knows a name could keep its owner locked out from anywhere. The price: a
# guesser spread over many addresses gets LOGIN_FAILURE_LIMIT tries per address (docs/security.md).
# A process-local cache would count per process, so without Redis the database keeps the counts (a write per
# failure, which the embedded demo can afford).
AXES_HANDLER = "dashboard.logins.LoginFailureCounts" if REDIS_CACHE else "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
# A success does not wipe the count: else anyone with one account could reset their address's count between
# guesses at others'. A typo or two of a colleague's ages out with the cool-off.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "dashboard.logins.lockout_response"  # 429, saying when to retry
# REMOTE_ADDR, or the address TRUSTED_PROXY_COUNT proxies in front of us put in X-Forwarded-For: a client
# could write any X-Forwarded-For of its own, so the header is believed only as far as our proxies go.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "dashboard.logins.client_ip"

EVALUATION_INTERVAL_MINUTES = env_int("EVALUATION_INTERVAL_MINUTES", 60)
DRIFT_INTERVAL_MINUTES = env_int("DRIFT_INTERVAL_MINUTES", 30)
# Seconds between rollout guard checks (docs/rollout.md): a bad canary is aborted within about this long.
ROLLOUT_GUARD_INTERVAL_SECONDS = env_int("ROLLOUT_GUARD_INTERVAL_SECONDS", 30)
# Retention (docs/operations.md, "Retention"): each deployment's purge runs nightly at this UTC hour (:30);
# evaluations older than METRIC_FULL_RESOLUTION_DAYS are thinned to one per version, source and day.
RETENTION_PURGE_HOUR_UTC = env_int("RETENTION_PURGE_HOUR_UTC", 3)
METRIC_FULL_RESOLUTION_DAYS = env_int("METRIC_FULL_RESOLUTION_DAYS", 365)
# How often beat sends the fan-outs of evaluations and drift checks (monitoring/selectors/checks.py).
CHECK_SWEEP_SECONDS = env_int("CHECK_SWEEP_SECONDS", 60)
CELERY_BEAT_SCHEDULE = {
    # Sweeps, not the intervals themselves: each deployment is due once its interval has passed since its last
    # check (its rows in Postgres), so a tick lost while Redis was away costs a minute, not an hour.
    "evaluate-all-deployments": {"task": "workers.tasks.evaluate_all_task", "schedule": float(CHECK_SWEEP_SECONDS)},
    "check-drift-all-deployments": {"task": "workers.tasks.check_drift_all_task", "schedule": float(CHECK_SWEEP_SECONDS)},
    "check-rollouts": {"task": "workers.tasks.check_rollouts_task", "schedule": float(ROLLOUT_GUARD_INTERVAL_SECONDS)},
    "index-pending-batches": {"task": "workers.tasks.index_pending_all_task", "schedule": 15.0},
    # A job whose worker died is failed within STALE_AFTER (90 s) plus this minute.
    "reap-stale-maintenance-jobs": {"task": "workers.tasks.reap_stale_jobs_task", "schedule": 60.0},
    "collect-media-garbage": {"task": "workers.tasks.collect_media_garbage_task", "schedule": 6 * 3600.0},
    "purge-expired-data": {"task": "workers.tasks.purge_all_task",
                           "schedule": crontab(minute=30, hour=RETENTION_PURGE_HOUR_UTC)},
    # Alert delivery: flush due alert groups, retry due notifications, take back those whose worker died.
    "sweep-notifications": {"task": "workers.tasks.sweep_notifications_task", "schedule": 15.0},
    # The dead man's switch: deployments that had traffic and went quiet.
    "check-silent-deployments": {"task": "workers.tasks.check_silent_deployments_task", "schedule": 600.0},
    # The weekly digest (opt-in per user), for the week that ended at Monday 00:00 UTC.
    "send-weekly-digests": {"task": "workers.tasks.send_weekly_digests_task",
                            "schedule": crontab(minute=0, hour=7, day_of_week="mon")},
}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# Alert email (workers/notifications/email.py) goes through EMAIL_BACKEND; with the SMTP backend, these.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "watchkeeper@localhost")

# Alert delivery (docs/alerts.md). Links in notifications (the report, acknowledge) start with PUBLIC_URL.
PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Webhook, Slack and Apprise URLs must resolve to public addresses; true lets local receivers (tests, demo) in.
ALERT_ALLOW_PRIVATE_URLS = env_bool("ALERT_ALLOW_PRIVATE_URLS", False)
# An acknowledge link works this long after the notification that carried it.
ALERT_ACK_LINK_MAX_AGE_HOURS = env_int("ALERT_ACK_LINK_MAX_AGE_HOURS", 7 * 24)
# The dead man's switch: a served deployment that had traffic and received none for this long raises an alert.
ALERT_NO_PREDICTIONS_HOURS = env_int("ALERT_NO_PREDICTIONS_HOURS", 6)
# Permanent failures in a row after which a channel is disabled (and the team alerted in-app).
ALERT_CHANNEL_DISABLE_AFTER = env_int("ALERT_CHANNEL_DISABLE_AFTER", 3)
# A deployment's scheduled evaluation or drift check failing this many times in a row raises check_failing.
ALERT_CHECK_FAILURES = env_int("ALERT_CHECK_FAILURES", 3)
# A claimed notification whose sender has not reported after this long was lost with its worker (tests shorten it).
ALERT_DELIVERY_LEASE_SECONDS = env_int("ALERT_DELIVERY_LEASE_SECONDS", 60)

# Logs (dashboard/logs.py): text for a terminal, or JSON lines for a log pipeline (compose runs json). Every line
# carries the request id, who asked (username or token prefix), the deployment and, in workers, the task.
LOG_FORMAT = env_str("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ConfigError(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO"))
# Celery's workers log through the same handlers and formats, not its own (dashboard/celery.py binds the task).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Watchkeeper's own metrics (GET /metrics, docs/operations.md "Monitoring Watchkeeper"). The default is a bearer
# token, METRICS_TOKEN (or METRICS_TOKEN_FILE), compared in constant time; METRICS_ALLOWED_NETS (CIDRs, on the
# client address as TRUSTED_PROXY_COUNT reads it) narrows who may connect, with the token or instead of it.
# Neither set: /metrics refuses everyone.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_NETS = env_list("METRICS_ALLOWED_NETS", [])
for _net in METRICS_ALLOWED_NETS:
    try:
        ipaddress.ip_network(_net, strict=False)
    except ValueError:
        raise ConfigError(f"METRICS_ALLOWED_NETS: {_net!r} is not an address or a network like 10.0.0.0/8") from None
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ConfigError("METRICS_TOKEN must be at least 16 characters")
# Where every process writes its series (one directory per role, made and cleared by docker/entrypoint.sh, which
# points PROMETHEUS_MULTIPROC_DIR at it); /metrics sums them all. Empty: this process's own series only.
METRICS_DIR = env_str("METRICS_DIR", "")

# Optional integrations, each off by default and imported only when on (pip install ".[observability]").
SENTRY_ENABLED = env_bool("SENTRY_ENABLED", False)
SENTRY_DSN = env_str("SENTRY_DSN", "") if SENTRY_ENABLED else ""
SENTRY_TRACES_SAMPLE_RATE = float(env_str("SENTRY_TRACES_SAMPLE_RATE", "0"))
OTEL_ENABLED = env_bool("OTEL_ENABLED", False)
if SENTRY_ENABLED:
    if not SENTRY_DSN:
        raise ConfigError("SENTRY_ENABLED=true needs SENTRY_DSN")
    sentry_init(dsn=SENTRY_DSN, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"

# Behind TLS (see .env.example). All off by default: `make demo` and compose serve plain HTTP on 127.0.0.1,
# and an HSTS header sent by mistake keeps browsers away from plain HTTP for SECURE_HSTS_SECONDS.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes call these over plain HTTP from inside the network; a redirect would fail them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Only behind a proxy that sets X-Forwarded-Proto itself: otherwise any client could claim HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None

# Pages load only our own static files (plotly.js included), so scripts come from 'self' alone: no inline
# script, no eval. Styles allow 'unsafe-inline' because plotly.js writes style attributes and a <style>
# element as it draws; inline style can restyle a page but not run code.
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
)
