"""Reads of raw events for other apps (the dashboard's event detail, its explorer's scope).

Every read is bounded by project, and by time where it touches `ingest_event`, so partition
pruning and the indexes do the work; the key table (`ingest_eventkey`) answers "does this
project have events" and "when was this request" from one index probe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.models import Event, EventKey


def events_exist(*, project_id: int) -> bool:
    """Whether the project ever sent an event still kept (the key table, one index probe)."""
    return EventKey.objects.filter(project_id=project_id).exists()


def request_timestamp(*, project_id: int, request_id: str) -> datetime | None:
    """The timestamp of the project's event `request_id` (which pins its one partition)."""
    return EventKey.objects.filter(project_id=project_id, request_id=request_id).values_list(
        "timestamp", flat=True).first()


def event_get(*, project_id: int, event_id: int, at: datetime | None, start: datetime, end: datetime) -> Event | None:
    """The project's event `event_id` with its environment: at timestamp `at` if known (one
    partition), else searched in [start, end)."""
    events = Event.objects.select_related("environment").filter(project_id=project_id, pk=event_id)
    bounds = {"timestamp": at} if at is not None else {"timestamp__gte": start, "timestamp__lt": end}
    return events.filter(**bounds).first()


def event_fields(event: Event) -> list[tuple[str, Any]]:
    """Every stored column of `event` but its project and environment, as (name, value)."""
    return [(f.name, getattr(event, f.attname)) for f in Event._meta.concrete_fields
            if f.name not in ("project", "environment")]
