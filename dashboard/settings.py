"""Watchkeeper settings: one module, everything read from the environment.

See .env.example for every variable. In the embedded mode (WATCHKEEPER_EMBEDDED=true),
used by `make demo` when neither Postgres nor Redis can be reached, the database is
SQLite and Celery tasks run in-process.
"""

from pathlib import Path

import dj_database_url
import plotly

from dashboard.env import env_bool, env_int, env_list, env_str

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
    "ninja",
    "monitoring",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "dashboard.middleware.UserTimezoneMiddleware",
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
    # Tests run in parallel sessions and CI against one server: each picks its own test database.
    DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_watchkeeper")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
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
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # plotly.min.js straight from the installed package (served as static/plotly/plotly.min.js):
    # no CDN, and no copy in git that drifts from the Python package's version.
    ("plotly", Path(plotly.__file__).parent / "package_data"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # lets `runserver` and tests serve plotly.js without collectstatic

MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))

# Uploads: ONNX files and datasets stream to disk above this size; the hard cap is our own.
MAX_MODEL_UPLOAD_BYTES = env_int("MAX_MODEL_UPLOAD_BYTES", 200 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 20 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
MAX_PREDICTION_BATCH = env_int("MAX_PREDICTION_BATCH", 10_000)
# Labels are two short fields a row, so a batch may be larger (one COPY whatever its size).
MAX_LABEL_BATCH = env_int("MAX_LABEL_BATCH", 100_000)
# File uploads (CSV/Parquet) of predictions or labels: rows per file and bytes per request.
MAX_UPLOAD_ROWS = env_int("MAX_UPLOAD_ROWS", 2_000_000)
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 512 * 1024 * 1024)
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
# Longer than the slowest maintenance job's hard limit, so Redis never redelivers a job still running.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}
CELERY_TASK_ROUTES = {"workers.tasks.run_maintenance_job_task": {"queue": "maintenance"}}
CELERY_TASK_DEFAULT_QUEUE = "default"

EVALUATION_INTERVAL_MINUTES = env_int("EVALUATION_INTERVAL_MINUTES", 60)
DRIFT_INTERVAL_MINUTES = env_int("DRIFT_INTERVAL_MINUTES", 30)
CELERY_BEAT_SCHEDULE = {
    "evaluate-all-deployments": {
        "task": "workers.tasks.evaluate_all_task",
        "schedule": EVALUATION_INTERVAL_MINUTES * 60.0,
    },
    "check-drift-all-deployments": {
        "task": "workers.tasks.check_drift_all_task",
        "schedule": DRIFT_INTERVAL_MINUTES * 60.0,
    },
    "index-pending-batches": {"task": "workers.tasks.index_pending_all_task", "schedule": 15.0},
    # A job whose worker died is failed within STALE_AFTER (90 s) plus this minute.
    "reap-stale-maintenance-jobs": {"task": "workers.tasks.reap_stale_jobs_task", "schedule": 60.0},
    "collect-media-garbage": {"task": "workers.tasks.collect_media_garbage_task", "schedule": 6 * 3600.0},
}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
