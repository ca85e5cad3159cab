"""Celery entry points of the rollup.

Invariant: a task only calls the service that `manage.py rollup` calls; all state lives
in PostgreSQL (dirty-hour markers), so a lost or duplicated message is harmless.
"""

from __future__ import annotations

from celery import shared_task, signature
from django.db.utils import OperationalError

from rollups.services import dirty_hours_rollup, retention_apply


@shared_task(
    name="rollups.rollup_dirty_hours",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def dirty_hours_rollup_task() -> int:
    """Idempotent: recomputes whole (project_id, hour_start) buckets claimed from the markers.

    Then chains alert evaluation by task name (rollups does not import alerts).
    """
    # Well inside the 60 s soft time limit; what is left is claimed by the next run.
    result = dirty_hours_rollup(max_seconds=30)
    signature("alerts.evaluate_rules", kwargs={"project_ids": result.project_ids}).delay()
    return result.hours


@shared_task(
    name="rollups.apply_retention",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def retention_apply_task() -> int:
    """Idempotent: deletes by cutoff date (per project for raw events), so a re-run deletes nothing more."""
    return retention_apply().events_deleted
