"""One `environ.Env` for the whole project, plus strict helpers.

A missing required variable fails at import with ImproperlyConfigured (PostHog's
get_from_env); a boolean that is not clearly true or false is rejected, not guessed
(healthchecks' envbool).
"""

from __future__ import annotations

import os

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. Run through `make run` / `make test` (which start embedded services) or export it."
        )
    return value
