"""Deletion of raw events: retention, and an end user's events on request.

Invariants:
- Aggregates are kept when raw events age out (their hours are not re-rolled).
- Deleting a user's events marks their hours dirty in the same transaction, so the rollup
  recomputes those hours without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from ingest.partitions import existing_partition_days, forget_known_partitions, partition_name


@dataclass
class RetentionResult:
    partitions_dropped: list[str] = field(default_factory=list)
    events_deleted: int = 0
    keys_deleted: int = 0


def events_apply_retention(*, now: datetime | None = None) -> RetentionResult:
    """Drop raw events older than each project's `raw_retention_days`.

    Whole day partitions older than every project's cutoff are dropped (instant, no
    bloat); in younger partitions, a project with a shorter retention has its rows
    trimmed. Aggregates are kept (they are not re-rolled: the hours stay as they were
    counted). Idempotent: keyed by the cutoff date of each project.
    """

    from projects.selectors import raw_retention_cutoffs

    now = now or timezone.now()
    result = RetentionResult()
    today = now.astimezone(UTC).date()
    cutoffs = raw_retention_cutoffs(today=today)
    # A partition can go when no project still keeps that day.
    oldest_kept = min(cutoffs.values(), default=today - timedelta(days=30))
    with connection.cursor() as cursor:
        for day in sorted(existing_partition_days()):
            if day < oldest_kept:
                with transaction.atomic():
                    cursor.execute(f'DROP TABLE IF EXISTS "{partition_name(day)}"')
                result.partitions_dropped.append(partition_name(day))
        forget_known_partitions()
        for project_id, cutoff in cutoffs.items():
            cutoff_at = datetime.combine(cutoff, datetime.min.time(), tzinfo=UTC)
            with transaction.atomic():
                cursor.execute(
                    'DELETE FROM ingest_event WHERE project_id = %s AND "timestamp" < %s', [project_id, cutoff_at]
                )
                result.events_deleted += cursor.rowcount
                # Keys beyond retention: a re-send older than 30 days is refused by validation anyway.
                cursor.execute(
                    'DELETE FROM ingest_eventkey WHERE project_id = %s AND "timestamp" < %s', [project_id, cutoff_at]
                )
                result.keys_deleted += cursor.rowcount
    return result


@dataclass
class ForgetResult:
    events_deleted: int = 0
    hours_marked: int = 0


def user_forget(*, project_id: int, user_id: str) -> ForgetResult:
    """Delete an end user's raw events and mark their hours for re-rollup, in one transaction.

    The rollup then recomputes those hours without the user, so totals stay consistent
    with raw data and the user's per-user aggregate rows disappear. Idempotency keys are
    kept (they hold no personal data) so a client retry cannot resurrect deleted events.
    """
    if not user_id:
        raise ValueError("user_id must not be empty")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """WITH gone AS (
                   DELETE FROM ingest_event WHERE project_id = %s AND user_id = %s
                   RETURNING date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AS hour_start
               ), marked AS (
                   INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at)
                   SELECT DISTINCT %s, hour_start AT TIME ZONE 'UTC', now() FROM gone
                   RETURNING 1
               )
               SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM marked)""",
            [project_id, user_id, project_id],
        )
        deleted, marked = cursor.fetchone()
    return ForgetResult(events_deleted=int(deleted), hours_marked=int(marked))
