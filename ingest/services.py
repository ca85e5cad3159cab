"""Writes of raw events: ingest, re-pricing.

Invariants:
- `events_ingest` returns only after COMMIT: what it reports as accepted is durable.
- One transaction writes the events, their idempotency keys and the dirty-hour markers,
  so a marker is visible exactly when its events are (the rollup relies on this).
- A `request_id` already stored for the project changes nothing and is counted as a
  duplicate, also when two posts of it race (the key table's primary key decides).
- Nothing here talks to Redis or Celery: a broker outage cannot lose an event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ingest.partitions import partitions_ensure
from ingest.schemas import MAX_PAST, FieldError, ValidEvent, body_events, event_validate
from pricing.services import Pricer, pricer_for

# One statement per batch: the batch arrives as one array per column (a single round
# trip, no per-row statements, no temp table to manage), keys are claimed first and
# only events whose key was new are inserted; the dirty-hour markers come from the
# rows actually inserted.
_COLUMNS: list[tuple[str, str]] = [
    ("request_id", "text"),
    ("timestamp", "timestamptz"),
    ("model", "text"),
    ("provider", "text"),
    ("service", "text"),
    ("feature", "text"),
    ("user_id", "text"),
    ("status", "text"),
    ("error_type", "text"),
    ("http_status", "smallint"),
    ("stop_reason", "text"),
    ("service_tier", "text"),
    ("batch", "boolean"),
    ("latency_ms", "float8"),
    ("time_to_first_token_ms", "float8"),
    ("input_tokens", "int8"),
    ("output_tokens", "int8"),
    ("cache_read_input_tokens", "int8"),
    ("cache_creation_input_tokens", "int8"),
    ("cache_write_5m_tokens", "int8"),
    ("cache_write_1h_tokens", "int8"),
    ("cost_usd", "numeric"),
    ("cache_savings_usd", "numeric"),
    ("client_cost_usd", "numeric"),
    ("price_source", "text"),
    ("metadata", "jsonb"),
]
_COL_NAMES = [name for name, _ in _COLUMNS]
_QUOTED = ", ".join(f'"{name}"' for name in _COL_NAMES)
_UNNEST = ", ".join(f"%s::{'text' if kind == 'jsonb' else kind}[]" for _, kind in _COLUMNS)
_SELECT = ", ".join(f's."{name}"::jsonb' if kind == "jsonb" else f's."{name}"' for name, kind in _COLUMNS)

INSERT_SQL = f"""
WITH s AS (
    SELECT * FROM unnest({_UNNEST}) AS s({_QUOTED})
), k AS (
    INSERT INTO ingest_eventkey (project_id, request_id, "timestamp")
    SELECT %s, s.request_id, s."timestamp" FROM s
    ON CONFLICT DO NOTHING
    RETURNING request_id
), ins AS (
    INSERT INTO ingest_event (project_id, environment_id, received_at, {_QUOTED})
    SELECT %s, %s, %s, {_SELECT} FROM s JOIN k ON k.request_id = s.request_id
    RETURNING date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AS hour_start
), d AS (
    INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at)
    SELECT DISTINCT %s, hour_start AT TIME ZONE 'UTC', %s FROM ins
)
SELECT count(*) FROM ins
"""  # noqa: S608 - column names are the constants above


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def _rejection(index: int, errors: list[FieldError]) -> dict[str, Any]:
    return {"index": index, "errors": [e.as_dict() for e in errors]}


def events_validate(raw_events: Iterable[Any], *, now: datetime, max_past: timedelta = MAX_PAST
                    ) -> tuple[list[ValidEvent], list[dict[str, Any]]]:
    valid: list[ValidEvent] = []
    rejected: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_events):
        event, errors = event_validate(raw, now=now, max_past=max_past)
        if event is None:
            rejected.append(_rejection(index, errors))
        else:
            valid.append(event)
    return valid, rejected


def _rows(events: list[ValidEvent], pricer: Pricer) -> list[tuple[Any, ...]]:
    """One tuple per event, in `_COLUMNS` order, priced."""
    rows = []
    for e in events:
        price = pricer.price(
            model=e.model, provider=e.provider, timestamp=e.timestamp, input_tokens=e.input_tokens,
            output_tokens=e.output_tokens, cache_read_input_tokens=e.cache_read_input_tokens,
            cache_write_5m_tokens=e.cache_write_5m_tokens, cache_write_1h_tokens=e.cache_write_1h_tokens,
            batch=e.batch,
        )
        rows.append((
            e.request_id, e.timestamp, e.model, e.provider, e.service, e.feature, e.user_id, e.status,
            e.error_type, e.http_status, e.stop_reason, e.service_tier, e.batch, e.latency_ms,
            e.time_to_first_token_ms, e.input_tokens, e.output_tokens, e.cache_read_input_tokens,
            e.cache_creation_input_tokens, e.cache_write_5m_tokens, e.cache_write_1h_tokens, price.cost_usd,
            price.cache_savings_usd, None if e.client_cost_usd is None else Decimal(repr(e.client_cost_usd)),
            price.source, None if e.metadata is None else json.dumps(e.metadata),
        ))
    return rows


# Large batches go through binary COPY into a per-connection temp table and the same
# statement reads from there: psycopg turns 25 Python lists into arrays in Python, which
# costs more than the insert itself at 500 rows, while COPY's row writer is C. Small
# batches keep the single round trip of the array form.
COPY_THRESHOLD = 64
_STAGE = "tally_ingest_stage"
_STAGE_DDL = (f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ("
              + ", ".join(f'"{n}" {"text" if k == "jsonb" else k}' for n, k in _COLUMNS) + ")")
_STAGE_TYPES = ["text" if k == "jsonb" else k for _, k in _COLUMNS]
INSERT_FROM_STAGE_SQL = INSERT_SQL.replace(f"SELECT * FROM unnest({_UNNEST}) AS s({_QUOTED})",
                                           f"SELECT * FROM {_STAGE}")


def _insert(cursor, rows: list[tuple[Any, ...]], tail: list[Any]) -> int:  # type: ignore[no-untyped-def]
    if len(rows) < COPY_THRESHOLD:
        cursor.execute(INSERT_SQL, [*map(list, zip(*rows, strict=True)), *tail])
        return int(cursor.fetchone()[0])
    raw = cursor.cursor  # the psycopg cursor under Django's wrapper
    raw.execute(_STAGE_DDL)
    raw.execute(f"TRUNCATE {_STAGE}")
    with raw.copy(f"COPY {_STAGE} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_STAGE_TYPES)
        for row in rows:
            copy.write_row(row)
    cursor.execute(INSERT_FROM_STAGE_SQL, tail)
    return int(cursor.fetchone()[0])


def events_store(*, project_id: int, environment_id: int, events: list[ValidEvent], received_at: datetime) -> int:
    """Insert valid events (first occurrence of each request_id); returns how many were new."""
    if not events:
        return 0
    seen: set[str] = set()
    unique = []
    for event in events:
        if event.request_id not in seen:
            seen.add(event.request_id)
            unique.append(event)
    days: set[date] = {e.timestamp.astimezone(UTC).date() for e in unique}
    partitions_ensure(days)
    rows = _rows(unique, pricer_for(project_id))
    tail = [project_id, project_id, environment_id, received_at, project_id, received_at]
    with transaction.atomic(), connection.cursor() as cursor:
        return _insert(cursor, rows, tail)


_retention: dict[int, tuple[float, int]] = {}
RETENTION_TTL_S = 60.0


def _retention_days(project_id: int) -> int:
    """The project's raw retention, cached per process for a minute (read on every request)."""
    now = time.monotonic()
    cached = _retention.get(project_id)
    if cached is None or now - cached[0] > RETENTION_TTL_S:
        from projects.models import Project

        days = Project.objects.filter(pk=project_id).values_list("raw_retention_days", flat=True).first() or 30
        cached = _retention[project_id] = (now, days)
    return cached[1]


def events_ingest(*, project_id: int, environment_id: int, body: Any, max_batch: int) -> IngestResult:
    """Validate a parsed body, store its valid events, and report (after COMMIT).

    Raises `ingest.schemas.BodyError` for a body of the wrong shape.
    """
    now = timezone.now()
    raw_events = body_events(body, max_batch=max_batch)
    max_past = min(MAX_PAST, timedelta(days=_retention_days(project_id)))
    valid, rejected = events_validate(raw_events, now=now, max_past=max_past)
    inserted = events_store(project_id=project_id, environment_id=environment_id, events=valid, received_at=now)
    return IngestResult(accepted=inserted, duplicates=len(valid) - inserted, rejected=rejected)


@dataclass
class RepriceResult:
    examined: int = 0
    changed: int = 0


_REPRICE_SELECT = """
SELECT "timestamp", id, model, provider, input_tokens, output_tokens, cache_read_input_tokens,
       cache_write_5m_tokens, cache_write_1h_tokens, batch, cost_usd, price_source, cache_savings_usd
FROM ingest_event WHERE project_id = %s AND "timestamp" >= %s AND "timestamp" < %s
"""
_REPRICE_UPDATE = """
WITH u AS (
    SELECT * FROM unnest(%s::timestamptz[], %s::int8[], %s::numeric[], %s::text[], %s::numeric[])
        AS u(ts, id, cost, source, savings)
), upd AS (
    UPDATE ingest_event e SET cost_usd = u.cost, price_source = u.source, cache_savings_usd = u.savings
    FROM u WHERE e."timestamp" = u.ts AND e.id = u.id AND e.project_id = %s
    RETURNING date_trunc('hour', e."timestamp" AT TIME ZONE 'UTC') AS hour_start
)
INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at)
SELECT DISTINCT %s, hour_start AT TIME ZONE 'UTC', now() FROM upd
"""


def events_reprice(
    *, start: datetime, end: datetime, project_id: int | None = None, progress: Callable[[str], None] | None = None
) -> RepriceResult:
    """Re-price stored events with `start <= timestamp < end` after prices or overrides changed.

    Works one project-day at a time, each in its own transaction: changed events and the
    dirty-hour markers of their hours commit together, so the rollup re-counts exactly
    the hours whose cost moved. Safe to interrupt and re-run (idempotent: an event whose
    price is already current is left alone).
    """
    from projects.models import Project

    result = RepriceResult()
    projects = Project.objects.all() if project_id is None else Project.objects.filter(pk=project_id)
    for project in projects:
        pricer = Pricer(project_id=project.pk)
        day_start = start
        while day_start < end:
            day_end = min(end, datetime.combine(day_start.date(), datetime.min.time(), tzinfo=UTC)
                          + timedelta(days=1))
            examined, changed = _reprice_window(project.pk, pricer, day_start, day_end)
            result.examined += examined
            result.changed += changed
            if progress and examined:
                progress(f"{project.slug} {day_start:%Y-%m-%d}: {examined} events, {changed} re-priced")
            day_start = day_end
    return result


def _reprice_window(project_id: int, pricer: Pricer, start: datetime, end: datetime) -> tuple[int, int]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_REPRICE_SELECT, [project_id, start, end])
        rows = cursor.fetchall()
        ts_col: list[datetime] = []
        id_col: list[int] = []
        cost_col: list[Decimal | None] = []
        source_col: list[str] = []
        savings_col: list[Decimal | None] = []
        for ts, event_id, model, provider, inp, out, cread, w5m, w1h, batch, cost, source, savings in rows:
            price = pricer.price(model=model, provider=provider, timestamp=ts, input_tokens=inp, output_tokens=out,
                                 cache_read_input_tokens=cread, cache_write_5m_tokens=w5m,
                                 cache_write_1h_tokens=w1h, batch=batch)
            if price.cost_usd != cost or price.source != source or price.cache_savings_usd != savings:
                ts_col.append(ts)
                id_col.append(event_id)
                cost_col.append(price.cost_usd)
                source_col.append(price.source)
                savings_col.append(price.cache_savings_usd)
        if id_col:
            cursor.execute(_REPRICE_UPDATE, [ts_col, id_col, cost_col, source_col, savings_col, project_id, project_id])
    return len(rows), len(id_col)


# --- retention and deletion -----------------------------------------------------------------


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
    from ingest.partitions import existing_partition_days, forget_known_partitions, partition_name
    from projects.models import Project

    now = now or timezone.now()
    result = RetentionResult()
    today = now.astimezone(UTC).date()
    cutoffs = {p.pk: today - timedelta(days=p.raw_retention_days) for p in Project.objects.all()}
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
                cursor.execute('DELETE FROM ingest_event WHERE project_id = %s AND "timestamp" < %s',
                               [project_id, cutoff_at])
                result.events_deleted += cursor.rowcount
                # Keys beyond retention: a re-send older than 30 days is refused by validation anyway.
                cursor.execute('DELETE FROM ingest_eventkey WHERE project_id = %s AND "timestamp" < %s',
                               [project_id, cutoff_at])
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
