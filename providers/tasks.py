"""Celery entry point of the provider sync.

Invariant: the task only calls the service `manage.py sync_provider_usage` calls, and that
service never raises for a provider, network or key failure (it records it on the connection),
so a beat run can't crash-loop on one bad key. Retries are only for the database being away.
"""

from __future__ import annotations

from celery import shared_task
from django.db.utils import OperationalError

from providers.services import provider_usage_sync_all


# Longer limits than the global 60 s: a sync may wait out a few 429 retry-afters (capped at
# 60 s each) across two reports; past the soft limit the service records the failure.
@shared_task(
    name="providers.sync_provider_usage",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=600,
    time_limit=900,
)
def provider_usage_sync_task(project_slug: str | None = None, days: int | None = None) -> int:
    """Idempotent: each sync replaces whole (connection, day) sets of rows, keyed by (connection, day, model)."""
    return sum(result.rows for result in provider_usage_sync_all(project_slug=project_slug, days=days))
