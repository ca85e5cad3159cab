"""Test overrides: speed only. Behaviour stays as in base."""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "tally-test-secret-key-not-for-production")

from config.settings.base import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
# A database of its own per test run, so parallel runs on one server (several checkouts, a
# developer's run beside CI) never collide; pytest-django drops it at the end.
DATABASES["default"]["TEST"] = {"NAME": f"test_tally_{os.getpid()}"}  # noqa: F405
