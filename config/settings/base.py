"""Tally settings: everything, env-driven. Production is environment variables.

`make run` / `make test` export DATABASE_URL and CELERY_BROKER_URL for the embedded
servers (devserver/embedded.py); in production they come from the environment.
"""

from __future__ import annotations

from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE

from config.env import env, env_bool, env_required

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env("SECRET_KEY", default="") or (
    "tally-insecure-dev-key-only-for-debug" if DEBUG else env_required("SECRET_KEY")
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "projects.apps.TallyAdminConfig",  # django.contrib.admin, for superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "core",
    "projects",
    "pricing",
    "ingest",
    "rollups",
    "alerts",
    "dashboard",
    "providers",
]

MIDDLEWARE = [
    "core.observability.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.http.ApiNulParameterMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.CSPMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

DATABASES = {"default": env.db_url_config(env_required("DATABASE_URL"))}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Fail fast when PostgreSQL is down so ingest can answer 503 instead of hanging.
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", default=3)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login"
# Failed logins allowed per username and, separately, per client IP within the window;
# past that every attempt is refused until the window ends (projects/login_limit.py).
TALLY_LOGIN_MAX_FAILURES = env.int("TALLY_LOGIN_MAX_FAILURES", default=10)
TALLY_LOGIN_WINDOW_S = env.int("TALLY_LOGIN_WINDOW_S", default=15 * 60)
TALLY_LOGIN_KEY_PREFIX = "tally:login:"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / ".tally" / "static")))
# Serve from the finders too, so tests and `make run` need no collectstatic step to work.
WHITENOISE_USE_FINDERS = True
STATICFILES_DIRS = [BASE_DIR / "static"]

SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HSTS only where cookies are https-only: `make run` (SECURE_COOKIES=0, plain http on
# 127.0.0.1) must not teach the browser to insist on https for 127.0.0.1 for a year.
SECURE_HSTS_SECONDS = env.int("TALLY_HSTS_SECONDS", default=31536000) if SESSION_COOKIE_SECURE and not DEBUG else 0
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# No inline script anywhere: figures travel as json_script blobs (type=application/json, which
# is data, not script) and static/dashboard/charts.js draws them. Styles need 'unsafe-inline'
# because Plotly injects <style> elements and style="" attributes when it draws a chart.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
    },
}

# --- Celery (Redis broker). Results are never used (Sentry: no result backend). ---
CELERY_BROKER_URL = env_required("CELERY_BROKER_URL")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="tally")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 300
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}

# --- Email ---
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="tally@localhost")

# --- Tally ---
TALLY_BASE_URL = env("TALLY_BASE_URL", default="http://127.0.0.1:8000")
TALLY_DATA_DIR = Path(env("TALLY_DATA_DIR", default=str(BASE_DIR / ".tally")))
# Redis used for the ingest rate limiter; the broker's Redis unless set.
TALLY_REDIS_URL = env("TALLY_REDIS_URL", default=CELERY_BROKER_URL)
# Per-key token bucket: sustained requests per second and burst size.
TALLY_INGEST_RATE_PER_SEC = env.float("TALLY_INGEST_RATE_PER_SEC", default=1000.0)
TALLY_INGEST_BURST = env.int("TALLY_INGEST_BURST", default=5000)
TALLY_INGEST_MAX_BODY_BYTES = env.int("TALLY_INGEST_MAX_BODY_BYTES", default=5 * 1024 * 1024)
TALLY_INGEST_MAX_BATCH = 1000
# Aggregates (hourly, daily, per user) are kept this long; raw events per project (raw_retention_days).
TALLY_AGGREGATE_RETENTION_DAYS = env.int("TALLY_AGGREGATE_RETENTION_DAYS", default=400)
# Rollup threads per pass, each with its own database connection and share of the days.
TALLY_ROLLUP_LANES = env.int("TALLY_ROLLUP_LANES", default=2)
# Days of day-partitions created ahead of today for the events table.
TALLY_PARTITIONS_AHEAD_DAYS = env.int("TALLY_PARTITIONS_AHEAD_DAYS", default=7)
# Secret that encrypts stored secrets: provider Admin API keys and alert channel URLs (core/secrets.py
# derives a Fernet key per use from it with HKDF). Empty: derived from SECRET_KEY, so rotating
# SECRET_KEY then means entering those again; set this to rotate SECRET_KEY independently.
TALLY_ENCRYPTION_KEY = env("TALLY_ENCRYPTION_KEY", default="")

# Structured JSON logs (one object per line, with the request ID) unless LOG_FORMAT=plain.
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.observability.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
