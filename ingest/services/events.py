"""Ingest: validate a body, price its events, store them, and report after COMMIT.

Invariants:
- `events_ingest` returns only after COMMIT: what it reports as accepted is durable.
- One transaction writes the events, their idempotency keys and the dirty-hour markers,
  so a marker is visible exactly when its events are (the rollup relies on this).
- A `request_id` already stored for the project changes nothing and is counted as a
  duplicate, also when two posts of it race (the key table's primary key decides).
- With `key_id`, nothing is written unless that ingest key is live when the keys are claimed,
  checked in the claiming statement itself.
- Nothing here talks to Redis or Celery: a broker outage cannot lose an event.

Two writes, one per kind of request:
- a single event (the commonest request): one prepared statement in autocommit, which claims
  the key, inserts the event and marks its hour, and is its own transaction (no BEGIN/COMMIT
  round trips);
- a batch: the keys are claimed first (`INSERT ... ON CONFLICT DO NOTHING RETURNING`), then
  only the events whose key was new are written by binary COPY straight into their day
  partitions, and their hours marked. COPY because psycopg turns Python lists into array
  parameters in Python, which cost more than the insert itself at 500 rows, while COPY's row
  writer is C; into the partitions because COPY into the partitioned parent routes every row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

import psycopg
import psycopg.errors
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import InterfaceError, OperationalError, ProgrammingError
from django.utils import timezone
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Int8

from core.caches import process_cache
from core.timeutil import utc_day, utc_hour_number
from ingest.partitions import forget_known_partitions, partition_name, partitions_ensure
from ingest.schemas import RATELIMIT_FIELDS, ValidEvent, Window, body_validate
from pricing.services import Pricer, pricer_for

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
    ("cost_units", "int8"),  # 1e-10 USD; cost_usd is computed from it (migration 0004)
    ("cache_savings_units", "int8"),
    ("client_cost_usd", "numeric"),
    ("price_source", "text"),
    ("metadata", "jsonb"),
    *((name, "int8") for name in RATELIMIT_FIELDS),
    ("project_id", "int8"),
    ("environment_id", "int8"),
    ("received_at", "timestamptz"),
]
_QUOTED = ", ".join(f'"{name}"' for name, _ in _COLUMNS)
_METADATA = [name for name, _ in _COLUMNS].index("metadata")
_INT8 = [i for i, (_, kind) in enumerate(_COLUMNS) if kind == "int8"]

# The key gate: a NULL key_id (a caller other than the HTTP endpoint) always passes.
_LIVE = (
    "live AS (SELECT %s::int8 IS NULL OR EXISTS (SELECT 1 FROM projects_ingestkey "
    "WHERE id = %s AND revoked_at IS NULL) AS ok)"
)

ONE_SQL = f"""
WITH {_LIVE}, k AS (
    INSERT INTO ingest_eventkey (project_id, request_id, "timestamp")
    SELECT %s::int8, %s::text, %s::timestamptz FROM live WHERE live.ok
    ON CONFLICT DO NOTHING
    RETURNING 1
), ins AS (
    INSERT INTO ingest_event ({_QUOTED})
    SELECT {", ".join(f"%s::{kind}" for _, kind in _COLUMNS)} FROM k
    RETURNING date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AS hour_start
), d AS (
    INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at)
    SELECT %s::int8, hour_start AT TIME ZONE 'UTC', %s::timestamptz FROM ins
)
SELECT (SELECT count(*) FROM ins), (SELECT ok FROM live)
"""  # noqa: S608 - column names are the constants above

# A batch's keys are COPYed into this per-session scratch table and claimed from it in one
# statement, which also empties it (DELETE ... RETURNING: inside a caller's transaction, batches
# may follow each other with no COMMIT between). ON COMMIT DELETE ROWS truncates its storage at
# every COMMIT: PostgreSQL never vacuums a temp table, and the dead rows of the DELETEs would
# otherwise pile up for as long as the connection lives, each claim scanning them again.
_KEY_STAGE = "tally_ingest_keys"
_KEY_STAGE_DDL = (
    f'CREATE TEMP TABLE IF NOT EXISTS {_KEY_STAGE} (request_id text, "timestamp" timestamptz) ON COMMIT DELETE ROWS'
)
_KEY_COPY = f'COPY {_KEY_STAGE} (request_id, "timestamp") FROM STDIN (FORMAT BINARY)'
# COPY.set_types by oid: by name, each call looks every name up again (~30 us a COPY).
_KEY_COPY_OIDS = [psycopg.adapters.types[kind].oid for kind in ("text", "timestamptz")]
# Returns the request ids that were new, or a single NULL when the key was not live.
CLAIM_SQL = f"""
WITH {_LIVE}, staged AS (
    DELETE FROM {_KEY_STAGE} RETURNING request_id, "timestamp"
), k AS (
    INSERT INTO ingest_eventkey (project_id, request_id, "timestamp")
    SELECT %s::int8, request_id, "timestamp" FROM staged, live WHERE live.ok
    ORDER BY request_id COLLATE "C"  -- see _store_batch: the same order in every transaction
    ON CONFLICT DO NOTHING
    RETURNING request_id
)
SELECT request_id FROM k UNION ALL SELECT NULL FROM live WHERE NOT live.ok
"""  # noqa: S608 - constants
_EVENT_COPY = 'COPY "{table}" (' + _QUOTED + ") FROM STDIN (FORMAT BINARY)"
_EVENT_COPY_OIDS = [psycopg.adapters.types[kind].oid for _, kind in _COLUMNS]
# Hours go as whole hours since the epoch: an int8[] costs the driver a fraction of a timestamptz[].
DIRTY_SQL = (
    "INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at) "
    "SELECT %s::int8, to_timestamp(h * 3600), %s::timestamptz FROM unnest(%s::int8[]) AS h"
)


class KeyNotLive(Exception):
    """The ingest key was revoked (or deleted) before the events were written: nothing was stored."""


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def _rows(events: list[ValidEvent], pricer: Pricer, tail: tuple[int, int, datetime]) -> list[tuple[Any, ...]]:
    """One tuple per event, in `_COLUMNS` order, priced. Runs for every event of every batch:
    the fields are unpacked in one step rather than read one attribute at a time."""
    price = pricer.price_units
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for (
        request_id,
        model,
        timestamp,
        latency_ms,
        input_tokens,
        output_tokens,
        cache_read,
        cache_total,
        cache_5m,
        cache_1h,
        status,
        error_type,
        http_status,
        stop_reason,
        service,
        feature,
        user_id,
        provider,
        batch,
        service_tier,
        ttft,
        client_cost,
        metadata,
        ratelimit,
    ) in events:
        cost_units, savings_units, source = price(
            model, provider, timestamp, input_tokens, output_tokens, cache_read, cache_5m, cache_1h, batch
        )
        append(
            (
                request_id,
                timestamp,
                model,
                provider,
                service,
                feature,
                user_id,
                status,
                error_type,
                http_status,
                stop_reason,
                service_tier,
                batch,
                latency_ms,
                ttft,
                input_tokens,
                output_tokens,
                cache_read,
                cache_total,
                cache_5m,
                cache_1h,
                cost_units,
                savings_units,
                None if client_cost is None else Decimal(repr(client_cost)),
                source,
                None if metadata is None else json.dumps(metadata),
                *ratelimit,
                *tail,
            )
        )
    return rows


def _store_one(db: BaseDatabaseWrapper, row: tuple[Any, ...], key_id: int | None) -> tuple[int, bool]:
    """The single-event write; (events inserted, whether the key was live).

    Prepared once per connection: Django turns psycopg's automatic preparing off
    (prepare_threshold None, which also makes it ignore prepare=True) and binds client-side, so
    the statement is sent on a plain psycopg cursor with a threshold set. Every integer goes as
    int8, so that one prepared statement serves every mix of sizes.

    A connection kept from an earlier request may have died since (PostgreSQL restarted).
    Django's per-request health check would find that out at the cost of a round trip on every
    request it makes a cursor for; instead, a reused connection that fails is replaced and the
    statement sent once more. That is safe: it either committed whole or not at all, and a
    second send of a committed event is a duplicate.
    """
    project_id, received_at = row[-3], row[-1]
    values = list(row)
    for i in _INT8:
        if values[i] is not None:
            values[i] = Int8(values[i])
    params = [Int8(key_id) if key_id is not None else None] * 2 + [
        Int8(project_id),
        row[0],
        row[1],
        *values,
        Int8(project_id),
        received_at,
    ]

    def execute() -> tuple[int, bool]:
        db.ensure_connection()
        raw = db.connection
        if raw.prepare_threshold is None:
            raw.prepare_threshold = 1_000_000
        with db.wrap_database_errors, psycopg.Cursor(raw) as cursor:
            cursor.execute(ONE_SQL, params, prepare=True)
            result = cursor.fetchone()
        assert result is not None  # the statement always returns its one row
        return int(result[0]), bool(result[1])

    if db.in_atomic_block or db.connection is None:
        return execute()
    try:
        return execute()
    except (OperationalError, InterfaceError):
        db.close()
    return execute()


def _store_batch(db: BaseDatabaseWrapper, rows: list[tuple[Any, ...]], key_id: int | None) -> tuple[int, bool]:
    """The batch write, in one transaction; (events inserted, whether the key was live)."""
    project_id, received_at = rows[0][-3], rows[0][-1]
    # Keys in request_id order (code points: COLLATE "C"): two batches racing on the same ids wait
    # for each other in the same order instead of deadlocking. The claim sorts them again: after a
    # rollback the stage's free space may take rows out of COPY order.
    rows.sort(key=itemgetter(0))
    with transaction.atomic(using=db.alias), db.cursor() as cursor, db.wrap_database_errors:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        raw.execute(_KEY_STAGE_DDL)
        with raw.copy(_KEY_COPY) as copy:
            copy.set_types(_KEY_COPY_OIDS)
            for row in rows:
                copy.write_row(row[:2])
        raw.execute(CLAIM_SQL, [key_id, key_id, project_id])
        claimed = raw.fetchall()
        if claimed and claimed[-1][0] is None:
            transaction.set_rollback(True, using=db.alias)
            return 0, False
        new = {request_id for (request_id,) in claimed}
        by_day: dict[int, list[tuple[Any, ...]]] = {}
        hours: set[int] = set()
        for row in rows:
            if row[0] in new:
                hour = utc_hour_number(row[1])
                hours.add(hour)
                by_day.setdefault(hour // 24, []).append(row)
        for day_number, day_rows in by_day.items():
            day_rows.sort(key=itemgetter(1))  # by timestamp: neighbouring index entries go in together
            with raw.copy(_EVENT_COPY.format(table=partition_name(utc_day(day_number)))) as copy:
                copy.set_types(_EVENT_COPY_OIDS)
                for row in day_rows:
                    if row[_METADATA] is not None:  # already JSON text: binary jsonb wants it wrapped
                        row = (*row[:_METADATA], Jsonb(row[_METADATA], dumps=str), *row[_METADATA + 1 :])
                    copy.write_row(row)
        if hours:
            raw.execute(DIRTY_SQL, [project_id, received_at, sorted(hours)])
    return len(new), True


def events_store(
    *, project_id: int, environment_id: int, events: list[ValidEvent], received_at: datetime, key_id: int | None = None
) -> int:
    """Insert valid events (the first occurrence of each request_id); returns how many were new.

    With `key_id`, nothing is written unless that ingest key is live at that moment, else KeyNotLive.
    """
    if not events:
        return 0
    unique = list({event.request_id: event for event in reversed(events)}.values())  # first occurrence wins
    rows = _rows(unique, pricer_for(project_id), (project_id, environment_id, received_at))
    days = {utc_day(utc_hour_number(row[1]) // 24) for row in rows}
    partitions_ensure(days)
    db = connections[DEFAULT_DB_ALIAS]
    if len(rows) == 1:
        inserted, live = _store_one(db, rows[0], key_id)
    else:
        try:
            inserted, live = _store_batch(db, rows, key_id)
        except ProgrammingError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
                raise
            # A day partition this process knew of is gone (dropped by hand, or a test reset):
            # look again, create what is missing, and write once more (nothing was committed).
            forget_known_partitions()
            partitions_ensure(days)
            inserted, live = _store_batch(db, rows, key_id)
    if not live:
        raise KeyNotLive
    return inserted


_retention: dict[int, tuple[float, int]] = {}
process_cache(_retention.clear)
RETENTION_TTL_S = 60.0


def _retention_days(project_id: int) -> int:
    """The project's raw retention, cached per process for a minute (read on every request)."""
    now = time.monotonic()
    cached = _retention.get(project_id)
    if cached is None or now - cached[0] > RETENTION_TTL_S:
        from projects.selectors import project_raw_retention_days

        days = project_raw_retention_days(project_id=project_id) or 30
        cached = _retention[project_id] = (now, days)
    return cached[1]


def events_ingest(
    *, project_id: int, environment_id: int, body: bytes | Any, max_batch: int, key_id: int | None = None
) -> IngestResult:
    """Validate a body (JSON bytes as received, or already parsed), store its valid events, and
    report (after COMMIT).

    Raises `ingest.schemas.BodyError` for a body that is malformed or of the wrong shape, and
    KeyNotLive (nothing stored) when `key_id` is given and that key is no longer live.
    """
    now = timezone.now()
    window = Window.at(now, timedelta(days=_retention_days(project_id)))
    valid, rejected = body_validate(body, window=window, max_batch=max_batch)
    inserted = events_store(
        project_id=project_id, environment_id=environment_id, events=valid, received_at=now, key_id=key_id
    )
    return IngestResult(accepted=inserted, duplicates=len(valid) - inserted, rejected=rejected)
