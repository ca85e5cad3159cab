from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection

from ingest.partitions import existing_partition_days, forget_known_partitions, partitions_ensure
from ingest.tasks import partitions_ensure_task


def test_migration_created_partitions_around_today(db):
    today = datetime.now(tz=UTC).date()
    days = existing_partition_days()
    assert {today - timedelta(days=30), today, today + timedelta(days=7)} <= days


def test_task_creates_partitions_ahead(db, settings):
    settings.TALLY_PARTITIONS_AHEAD_DAYS = 12
    today = datetime.now(tz=UTC).date()
    assert today + timedelta(days=12) not in existing_partition_days()
    created = partitions_ensure_task()
    assert created >= 1
    assert today + timedelta(days=12) in existing_partition_days()
    assert partitions_ensure_task() == 0  # idempotent


def test_on_demand_partition_for_a_day_without_one(db):
    forget_known_partitions()
    day = datetime.now(tz=UTC).date() + timedelta(days=40)
    partitions_ensure({day})
    assert day in existing_partition_days()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_event (project_id, environment_id, request_id, timestamp, received_at, model, "
            "provider, service, status, latency_ms) VALUES (1, 1, 'x', %s, now(), 'm', 'anthropic', 's', 'ok', 1)",
            [datetime(day.year, day.month, day.day, 12, tzinfo=UTC)],
        )
        cursor.execute(f"SELECT count(*) FROM ingest_event_{day:%Y%m%d}")
        assert cursor.fetchone()[0] == 1
