"""Reads about Tally itself (health of its dependencies)."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.db.utils import DatabaseError, InterfaceError


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except (DatabaseError, InterfaceError):
        connection.close_if_unusable_or_obsolete()
        return False


def broker_ok() -> bool:
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
        return bool(client.ping())
    except redis.RedisError:
        return False


def readiness() -> dict[str, bool]:
    return {"database": database_ok(), "broker": broker_ok()}
