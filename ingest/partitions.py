"""Day partitions of `ingest_event`.

Partitions are created ahead by a periodic task (`ingest.partitions_ensure`) and, when
an event lands on a day that has none yet, on demand by ingest before its COPY. Each
CREATE runs in its own short transaction (IF NOT EXISTS; a concurrent creator's
duplicate error is swallowed), so ingest never holds the parent's lock for long.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.db import connection as default_connection
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import DatabaseError, ProgrammingError

from core.caches import process_cache

# Days known to have a partition, per process: saves a catalog query per batch.
_known: set[date] = set()


def partition_name(day: date) -> str:
    return f"ingest_event_{day:%Y%m%d}"


def _create(day: date, connection: BaseDatabaseWrapper) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE IF NOT EXISTS "{partition_name(day)}" PARTITION OF ingest_event '
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )


def existing_partition_days(connection: BaseDatabaseWrapper = default_connection) -> set[date]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'ingest_event'::regclass"
        )
        names = [row[0] for row in cursor.fetchall()]
    return {datetime.strptime(n.rsplit("_", 1)[1], "%Y%m%d").date() for n in names}  # noqa: DTZ007


def partitions_ensure(days: set[date]) -> None:
    """Make sure a partition exists for each day (used by ingest on demand)."""
    missing = days - _known
    if not missing:
        return
    existing = existing_partition_days()
    _known.update(existing & days)
    for day in sorted(missing - existing):
        try:
            with transaction.atomic():
                _create(day, default_connection)
        except (ProgrammingError, DatabaseError):
            # A concurrent ingest created it first (duplicate table / catalog race).
            if day not in existing_partition_days():
                raise
        _known.add(day)


def partitions_ensure_range(
    *, days_back: int, days_ahead: int, connection: BaseDatabaseWrapper = default_connection
) -> int:
    """Create partitions from today-days_back to today+days_ahead; returns how many were new."""
    today = datetime.now(tz=UTC).date()
    wanted = {today + timedelta(days=offset) for offset in range(-days_back, days_ahead + 1)}
    missing = wanted - existing_partition_days(connection)
    for day in sorted(missing):
        _create(day, connection)
    return len(missing)


@process_cache
def forget_known_partitions() -> None:
    """For tests and retention: the next ingest re-checks the catalog."""
    _known.clear()
