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
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

import psycopg
import psycopg.adapt
import psycopg.errors
import psycopg.types.numeric
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import IntegrityError, InterfaceError, OperationalError, ProgrammingError
from django.utils import timezone
from psycopg.types.json import Jsonb

from core.timeutil import utc_day, utc_hour_number
from ingest.partitions import forget_known_partitions, partition_name, partitions_ensure
from ingest.schemas import MAX_PAST, FieldError, ValidEvent, batch_events_decode, body_events, event_validate
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
    ("cost_units", "int8"),  # 1e-10 USD; cost_usd is computed from it (migration 0004)
    ("cache_savings_units", "int8"),
    ("client_cost_usd", "numeric"),
    ("price_source", "text"),
    ("metadata", "jsonb"),
]
_COL_NAMES = [name for name, _ in _COLUMNS]
_NCOLS = len(_COLUMNS)
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


@dataclass
class _Rows:
    """Priced rows of a batch, as `_rows` makes them."""

    rows: list[tuple[Any, ...]]
    by_day: dict[int, list[tuple[Any, ...]]]  # UTC day number -> that day's rows (the COPY path)
    hours: set[int]  # UTC hour numbers (hours since the epoch) with events


def _rows(events: list[ValidEvent], pricer: Pricer, extra: tuple[Any, ...]) -> _Rows:
    """One tuple per event, in `_COLUMNS` order, priced, followed by `extra` (project_id,
    environment_id, received_at: the rest of a COPY row; the statements take `row[:_NCOLS]`),
    grouped by UTC day as well. Runs for every event of every batch: the fields are unpacked in
    one step rather than read one attribute at a time, and each timestamp's hour is worked out
    once, here."""
    project_id, environment_id, received_at = extra
    price = pricer.price_units
    rows: list[tuple[Any, ...]] = []
    by_day: dict[int, list[tuple[Any, ...]]] = {}
    hours: set[int] = set()
    append = rows.append
    add_hour = hours.add
    for (request_id, model, timestamp, latency_ms, input_tokens, output_tokens, cache_read, cache_total, cache_5m,
         cache_1h, status, error_type, http_status, stop_reason, service, feature, user_id, provider, batch,
         service_tier, ttft, client_cost, metadata) in events:
        cost_units, savings_units, source = price(model, provider, timestamp, input_tokens, output_tokens, cache_read,
                                                  cache_5m, cache_1h, batch)
        row = (
            request_id, timestamp, model, provider, service, feature, user_id, status, error_type, http_status,
            stop_reason, service_tier, batch, latency_ms, ttft, input_tokens, output_tokens, cache_read, cache_total,
            cache_5m, cache_1h, cost_units, savings_units,
            None if client_cost is None else Decimal(repr(client_cost)), source,
            None if metadata is None else json.dumps(metadata), project_id, environment_id, received_at,
        )
        append(row)
        hour = utc_hour_number(timestamp)
        add_hour(hour)
        day_rows = by_day.get(hour // 24)
        if day_rows is None:
            by_day[hour // 24] = [row]
        else:
            day_rows.append(row)
    return _Rows(rows, by_day, hours)


class KeyNotLive(Exception):
    """The ingest key was revoked (or deleted) before the events were written: nothing was stored."""


# The key gate: with `key_id`, the events are written only while that key is live, checked in
# the same statement (so a key revoked a moment ago stores nothing, whatever a cache said).
_LIVE_CTE = "live AS (SELECT 1 FROM projects_ingestkey WHERE id = %s AND revoked_at IS NULL), "
_LIVE_WHERE = " WHERE EXISTS (SELECT 1 FROM live)"

# Large batches go through binary COPY into a per-connection temp table and the same
# statement reads from there: psycopg turns 25 Python lists into arrays in Python, which
# costs more than the insert itself at 500 rows, while COPY's row writer is C. Small
# batches keep the single round trip of the array form, and a single event (the commonest
# request) has a statement of its own with one scalar parameter per column, prepared once
# per connection.
COPY_THRESHOLD = 64
_STAGE = "tally_ingest_stage"
# ON COMMIT DELETE ROWS: the stage empties itself at each COMMIT, so a batch needs no TRUNCATE
# (which would rewrite the temp table's catalog entry every time).
_STAGE_DDL = (f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ("
              + ", ".join(f'"{n}" {"text" if k == "jsonb" else k}' for n, k in _COLUMNS) + ") ON COMMIT DELETE ROWS")
_STAGE_TYPES = ["text" if k == "jsonb" else k for _, k in _COLUMNS]
INSERT_FROM_STAGE_SQL = INSERT_SQL.replace(f"SELECT * FROM unnest({_UNNEST}) AS s({_QUOTED})",
                                           f"SELECT * FROM {_STAGE}")


def _gated(sql: str) -> str:
    """`sql` (one of the insert statements) writing only while the key is live; it then also
    returns whether the key was live."""
    sql = sql.replace("WITH ", "WITH " + _LIVE_CTE, 1)
    sql = sql.replace("ON CONFLICT DO NOTHING", _LIVE_WHERE + " ON CONFLICT DO NOTHING", 1)
    return sql.replace("SELECT count(*) FROM ins", "SELECT count(*), EXISTS (SELECT 1 FROM live) FROM ins")


_ONE_VALUES = ", ".join(f"%s::{kind}" for _, kind in _COLUMNS)
INSERT_ONE_SQL = f"""
WITH k AS (
    INSERT INTO ingest_eventkey (project_id, request_id, "timestamp")
    SELECT %s::int8, %s::text, %s::timestamptz
    ON CONFLICT DO NOTHING
    RETURNING 1
), ins AS (
    INSERT INTO ingest_event (project_id, environment_id, received_at, {_QUOTED})
    SELECT %s::int8, %s::int8, %s::timestamptz, {_ONE_VALUES} FROM k
    RETURNING date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AS hour_start
), d AS (
    INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at)
    SELECT %s::int8, hour_start AT TIME ZONE 'UTC', %s::timestamptz FROM ins
)
SELECT count(*) FROM ins
"""  # noqa: S608 - column names are the constants above
_SQL = {
    (kind, gated): _gated(sql) if gated else sql
    for kind, sql in (("one", INSERT_ONE_SQL), ("arrays", INSERT_SQL), ("stage", INSERT_FROM_STAGE_SQL))
    for gated in (False, True)
}

# Server-side binding for the prepared statements: every int goes as int8, whatever its size,
# so one statement is prepared once rather than once per mix of int2/int4/int8 parameters.
# Per psycopg connection (one per thread, as Django keeps them): its cursor for the prepared
# statements (by id, checked to be that connection's, pruned of closed ones: a dict of weak
# keys would never let go, since each cursor refers to its connection), and whether its stage
# table exists (both last as long as the session).
_cursors: dict[int, psycopg.Cursor[Any]] = {}
_staged: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


def _new_cursor(raw: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    # Django turns psycopg's automatic preparing off (prepare_threshold None), which also
    # makes it ignore prepare=True. Django's own cursors bind client-side and never
    # prepare, so a threshold only enables it for the statements sent from here.
    if raw.prepare_threshold is None:
        raw.prepare_threshold = 1_000_000
    cursor = psycopg.Cursor(raw)
    cursor.adapters.register_dumper(int, psycopg.types.numeric.Int8Dumper)
    cursor.adapters.register_dumper(int, psycopg.types.numeric.Int8BinaryDumper)
    return cursor


def _prepared_cursor(raw: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    cursor = _cursors.get(id(raw))
    if cursor is None or cursor.connection is not raw:
        if len(_cursors) >= 64:
            for key, old in list(_cursors.items()):
                if old.connection.closed:
                    _cursors.pop(key, None)
        cursor = _cursors[id(raw)] = _new_cursor(raw)
    return cursor


def _execute_prepared(raw: psycopg.Connection[Any], sql: str, params: list[Any], gated: bool) -> tuple[int, bool]:
    cursor = _prepared_cursor(raw)
    cursor.execute(sql, params, prepare=True)
    result = cursor.fetchone()
    assert result is not None
    return int(result[0]), not gated or bool(result[1])


def _insert_one(raw: psycopg.Connection[Any], row: tuple[Any, ...], tail: list[Any],
                key_id: int | None) -> tuple[int, bool]:
    params = [tail[0], row[0], row[1], *tail[1:4], *row[:_NCOLS], *tail[4:]]
    if key_id is not None:
        params.insert(0, key_id)
    return _execute_prepared(raw, _SQL["one", key_id is not None], params, key_id is not None)


# Batches of COPY_THRESHOLD or more first try the optimistic path: every event is new (the
# usual case), so keys and events are COPYed straight into their tables, with no stage and
# no INSERT ... SELECT: PostgreSQL's COPY batches heap writes and skips the per-row planner
# and conflict machinery, about half the server time of the staged statement. The key
# table's primary key still decides: a request_id already stored (a client's re-send), or
# being stored by a concurrent post, makes the COPY fail on that key, the transaction rolls
# back whole, and the batch is written again through the stage with ON CONFLICT DO NOTHING.
# Keys go in request_id order, so two batches racing on the same ids wait for each other in
# the same order instead of deadlocking.
#
# Both COPYs are binary (no timestamp or number parsing on the server). Events go in
# timestamp order, one COPY per day straight into that day's partition: COPY into the
# partitioned parent routes every row (a partition lookup and, when consecutive rows fall on
# different days, a switch of insert buffers), which cost about a fifth of the event insert.
# The partition's own constraint still checks each row's day.
_EVENT_COPY_COLUMNS = [*_COL_NAMES, "project_id", "environment_id", "received_at"]
_EVENT_COPY_INTO = ('COPY "{table}" (' + ", ".join(f'"{c}"' for c in _EVENT_COPY_COLUMNS)
                    + ") FROM STDIN (FORMAT BINARY)")
_EVENT_COPY_TYPES = [kind for _, kind in _COLUMNS] + ["int8", "int8", "timestamptz"]
# COPY.set_types by oid: by name, each call looks every name up again (~30 us a COPY).
_EVENT_COPY_OIDS = [psycopg.adapters.types[kind].oid for kind in _EVENT_COPY_TYPES]
_METADATA = _COL_NAMES.index("metadata")
_KEY_COPY = 'COPY ingest_eventkey (project_id, request_id, "timestamp") FROM STDIN (FORMAT BINARY)'
_KEY_COPY_OIDS = [psycopg.adapters.types[kind].oid for kind in ("int8", "text", "timestamptz")]
# Hours go as whole hours since the epoch: an int8[] costs the driver a fraction of a timestamptz[].
_DIRTY_SQL = ("INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at) "
              "SELECT %s::int8, to_timestamp(h * 3600), %s::timestamptz FROM unnest(%s::int8[]) AS h")
_DIRTY_GATED_SQL = ("WITH " + _LIVE_CTE + "d AS (" + _DIRTY_SQL + _LIVE_WHERE + ") SELECT EXISTS (SELECT 1 FROM live)")
_KEY_CONFLICT = "ingest_eventkey_pkey"


def _copy_all_new(cursor, batch: _Rows, tail: list[Any], key_id: int | None) -> bool:  # type: ignore[no-untyped-def]
    """The optimistic batch write (caller's transaction); False if the key was not live."""
    project_id, received_at = tail[1], tail[3]
    raw = cursor.cursor
    keys = sorted(batch.rows, key=itemgetter(0))  # by request_id
    with raw.copy(_KEY_COPY) as copy:
        copy.set_types(_KEY_COPY_OIDS)
        write_row = copy.write_row
        for row in keys:
            write_row((project_id, row[0], row[1]))
    for day_number, day_rows in batch.by_day.items():
        day_rows.sort(key=itemgetter(1))  # by timestamp: neighbouring index entries go in together
        with raw.copy(_EVENT_COPY_INTO.format(table=partition_name(utc_day(day_number)))) as copy:
            copy.set_types(_EVENT_COPY_OIDS)
            write_row = copy.write_row
            for row in day_rows:
                if row[_METADATA] is not None:  # already JSON text: binary jsonb wants it wrapped
                    row = (*row[:_METADATA], Jsonb(row[_METADATA], dumps=str), *row[_METADATA + 1:])
                write_row(row)
    hours = sorted(batch.hours)
    if key_id is None:
        cursor.execute(_DIRTY_SQL, [project_id, received_at, hours])
        return True
    prepared = _prepared_cursor(raw.connection)
    prepared.execute(_DIRTY_GATED_SQL, [key_id, project_id, received_at, hours], prepare=True)
    result = prepared.fetchone()
    return bool(result and result[0])


def _insert(cursor, rows: list[tuple[Any, ...]], tail: list[Any], key_id: int | None,  # type: ignore[no-untyped-def]
            own_transaction: bool) -> tuple[int, bool]:
    gate = [key_id] if key_id is not None else []
    if len(rows) < COPY_THRESHOLD:
        columns = list(zip(*rows, strict=True))[:_NCOLS]
        cursor.execute(_SQL["arrays", key_id is not None], [*gate, *map(list, columns), *tail])
        result = cursor.fetchone()
        return int(result[0]), key_id is None or bool(result[1])
    raw_conn = connection.connection
    raw = cursor.cursor  # the psycopg cursor under Django's wrapper
    if raw_conn not in _staged:
        raw.execute(_STAGE_DDL)
        # Known to exist once that CREATE has committed (a rollback takes the table away too).
        transaction.on_commit(lambda: _staged.add(raw_conn))
    if not own_transaction:
        # Inside a caller's transaction (tests, scripts) there may be no COMMIT between batches.
        raw.execute(f"TRUNCATE {_STAGE}")
    with raw.copy(f"COPY {_STAGE} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_STAGE_TYPES)
        write_row = copy.write_row
        for row in rows:
            write_row(row[:_NCOLS])
    return _execute_prepared(raw_conn, _SQL["stage", key_id is not None], [*gate, *tail], key_id is not None)


def events_store(*, project_id: int, environment_id: int, events: list[ValidEvent], received_at: datetime,
                 key_id: int | None = None) -> int:
    """Insert valid events (first occurrence of each request_id); returns how many were new.

    With `key_id`, nothing is written unless that ingest key is live at that moment (checked in
    the writing statement itself), else KeyNotLive.
    """
    if not events:
        return 0
    if len(events) == 1:
        unique = events
    else:
        seen: set[str] = set()
        unique = []
        for event in events:
            if event.request_id not in seen:
                seen.add(event.request_id)
                unique.append(event)
    batch = _rows(unique, pricer_for(project_id), (project_id, environment_id, received_at))
    rows = batch.rows
    days = {utc_day(d) for d in batch.by_day}
    partitions_ensure(days)
    tail = [project_id, project_id, environment_id, received_at, project_id, received_at]
    db = connections[DEFAULT_DB_ALIAS]  # the thread's wrapper itself: `connection.x` costs a lookup each time
    if len(rows) == 1 and not db.in_atomic_block:
        # One statement in autocommit is its own transaction: the COMMIT happens before the
        # server answers it, so no BEGIN/COMMIT round trips.
        inserted, live = _store_one(db, rows[0], tail, key_id)
    else:
        own_transaction = not db.in_atomic_block
        inserted = -1
        if len(rows) >= COPY_THRESHOLD:
            try:
                with transaction.atomic(), db.cursor() as cursor, db.wrap_database_errors:
                    live = _copy_all_new(cursor, batch, tail, key_id)
                    inserted = len(rows)
                    if not live:
                        transaction.set_rollback(True)
            except IntegrityError as exc:
                if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) != _KEY_CONFLICT:
                    raise
                inserted = -1  # some request_id is already stored: the staged path sorts them out
            except ProgrammingError as exc:
                if not isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
                    raise
                # A day partition this process knew of is gone (dropped by hand, or a test reset):
                # look again, create what is missing, and write through the parent instead.
                forget_known_partitions()
                partitions_ensure(days)
                inserted = -1
        if inserted < 0:
            with transaction.atomic(), db.cursor() as cursor, db.wrap_database_errors:
                if len(rows) == 1:
                    inserted, live = _insert_one(db.connection, rows[0], tail, key_id)
                else:
                    inserted, live = _insert(cursor, rows, tail, key_id, own_transaction)
                if not live:
                    transaction.set_rollback(True)
    if not live:
        raise KeyNotLive
    return inserted


def _store_one(db: BaseDatabaseWrapper, row: tuple[Any, ...], tail: list[Any], key_id: int | None
               ) -> tuple[int, bool]:
    """The autocommit single-event write, on the thread's Django connection.

    A connection kept from an earlier request may have died since (PostgreSQL restarted).
    Django's per-request health check (a SELECT 1) would find that out at the cost of a round
    trip on every request; instead, a reused connection that fails is replaced and the
    statement sent once more. That is safe: the statement is idempotent (the key table
    dedups), and it either committed whole or not at all.

    (Group commit of concurrent single events, one transaction for several requests' rows,
    was measured here and lost: PostgreSQL already shares WAL flushes between concurrent
    commits, and psycopg's pipeline plus the hand-offs between threads cost more Python than
    the round trips they saved.)
    """
    reused = db.connection is not None
    try:
        db.ensure_connection()
        with db.wrap_database_errors:
            return _insert_one(db.connection, row, tail, key_id)
    except (OperationalError, InterfaceError):
        if not reused:
            raise
        db.close()
    db.ensure_connection()
    with db.wrap_database_errors:
        return _insert_one(db.connection, row, tail, key_id)


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


def events_ingest(*, project_id: int, environment_id: int, body: Any, max_batch: int,
                  key_id: int | None = None, exact_body: Callable[[], Any] | None = None) -> IngestResult:
    """Validate a parsed body, store its valid events, and report (after COMMIT).

    Raises `ingest.schemas.BodyError` for a body of the wrong shape, and KeyNotLive (nothing
    stored) when `key_id` is given and that key is no longer live.

    `exact_body` gives the body as Python's json module parses it, when `body` came from a
    faster parser that may read some values differently (orjson reads integers past 64 bits as
    floats). Such values are always invalid, so `body` is only swapped for `exact_body()`
    when something was rejected, and the errors are then exactly those of the json module.
    """
    now = timezone.now()
    raw_events = body_events(body, max_batch=max_batch)
    max_past = min(MAX_PAST, timedelta(days=_retention_days(project_id)))
    valid, rejected = events_validate(raw_events, now=now, max_past=max_past)
    if rejected and exact_body is not None:
        raw_events = body_events(exact_body(), max_batch=max_batch)
        valid, rejected = events_validate(raw_events, now=now, max_past=max_past)
    inserted = events_store(project_id=project_id, environment_id=environment_id, events=valid, received_at=now,
                            key_id=key_id)
    return IngestResult(accepted=inserted, duplicates=len(valid) - inserted, rejected=rejected)


def events_ingest_json(*, project_id: int, environment_id: int, data: bytes, max_batch: int,
                       key_id: int | None = None) -> IngestResult | None:
    """`events_ingest` of a raw JSON batch body whose events are all plainly valid, decoded and
    checked in one pass (`ingest.schemas.batch_events_decode`); None, having done nothing, for
    any other body: then parse it and call `events_ingest`, which words every error."""
    if b'"events"' not in data[:64]:  # a single event: the usual way is as fast
        return None
    now = timezone.now()
    max_past = min(MAX_PAST, timedelta(days=_retention_days(project_id)))
    valid = batch_events_decode(data, now=now, max_past=max_past, max_batch=max_batch)
    if valid is None:
        return None
    inserted = events_store(project_id=project_id, environment_id=environment_id, events=valid, received_at=now,
                            key_id=key_id)
    return IngestResult(accepted=inserted, duplicates=len(valid) - inserted)


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
    UPDATE ingest_event e SET cost_units = (u.cost * 10000000000)::bigint, price_source = u.source,
                              cache_savings_units = (u.savings * 10000000000)::bigint
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
