"""Periodic maintenance of the events table.

Invariant: partitions for today .. today + TALLY_PARTITIONS_AHEAD_DAYS exist, so ingest
rarely has to create one on demand.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from ingest.partitions import partitions_ensure_range


@shared_task(name="ingest.partitions_ensure")
def partitions_ensure_task() -> int:
    """Idempotent: CREATE TABLE IF NOT EXISTS per day partition, keyed by its date."""
    return partitions_ensure_range(days_back=0, days_ahead=settings.TALLY_PARTITIONS_AHEAD_DAYS)
