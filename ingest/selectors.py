"""Reads of raw events for other apps (the dashboard's event detail, and its explorer's calls).

Every read is bounded by project, and by time where it touches `ingest_event`, so partition
pruning and the indexes do the work; the key table (`ingest_eventkey`) answers "does this
project have events" and "when was this request" from one index probe.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from ingest.models import Event, EventKey
from pricing.services import TOKEN_FIELDS


def events_exist(*, project_id: int) -> bool:
    """Whether the project ever sent an event still kept (the key table, one index probe)."""
    return EventKey.objects.filter(project_id=project_id).exists()


def request_timestamp(*, project_id: int, request_id: str) -> datetime | None:
    """The timestamp of the project's event `request_id` (which pins its one partition)."""
    return (
        EventKey.objects.filter(project_id=project_id, request_id=request_id)
        .values_list("timestamp", flat=True)
        .first()
    )


def event_get(*, project_id: int, event_id: int, at: datetime | None, start: datetime, end: datetime) -> Event | None:
    """The project's event `event_id` with its environment: at timestamp `at` if known (one
    partition), else searched in [start, end)."""
    events = Event.objects.select_related("environment").filter(project_id=project_id, pk=event_id)
    bounds = {"timestamp": at} if at is not None else {"timestamp__gte": start, "timestamp__lt": end}
    return events.filter(**bounds).first()


def event_fields(event: Event) -> list[tuple[str, Any]]:
    """Every stored column of `event` but its project and environment, as (name, value)."""
    return [
        (f.name, getattr(event, f.attname))
        for f in Event._meta.concrete_fields
        if f.name not in ("project", "environment")
    ]


# --- the events explorer's calls ------------------------------------------------------------------
#
# The explorer (dashboard/explorer.py) lists a project's calls, filtered and in one of four
# orders, each with its own index (migration 0005 says why each):
#
#     time     "timestamp"                                            (project_id, "timestamp")
#     latency  latency_ms                                             (project_id, latency_ms, id)
#     cost     COALESCE(cost_units, -1): unpriced calls sort last    (project_id, <that>, id)
#     tokens   input + output + cache read + cache write tokens       (project_id, <that>, id)
#
# all descending, ties broken by the event id (unique across partitions: one identity
# sequence), so an order is total and keyset pagination is stable: the cursor is the last
# row's (key, id), and the next page is the rows strictly after it in that order. No OFFSET:
# page 200 costs what page 1 does. The dashboard says what to select (`CallSelection`, plain
# values) and the SQL over `ingest_event` is built here, beside the table and its indexes.

COST_UNITS_PER_USD = 10**10  # costs are stored as integer 1e-10 USD (migration 0004)

# The sort keys, spelled exactly as the indexes of migration 0005 spell them (PostgreSQL
# matches an expression index by expression, so these strings and the index must agree).
_TOKENS_SQL = "(input_tokens + output_tokens + cache_read_input_tokens + cache_creation_input_tokens)"
SORT_SQL = {"time": '"timestamp"', "latency": "latency_ms", "cost": "COALESCE(cost_units, -1)", "tokens": _TOKENS_SQL}

_COLUMNS = (
    "id",
    "timestamp",
    "request_id",
    "environment_id",
    "service",
    "feature",
    "user_id",
    "model",
    "provider",
    "status",
    "error_type",
    "http_status",
    "stop_reason",
    "batch",
    "service_tier",
    "latency_ms",
    "time_to_first_token_ms",
    *TOKEN_FIELDS,
    "cost_usd",
    "cache_savings_usd",
    "client_cost_usd",
    "price_source",
    "metadata",
)
_SELECT = ", ".join(f'"{c}"' for c in _COLUMNS)


@dataclass(frozen=True)
class CallSelection:
    """Which of a project's calls to list, and in which order: plain values, every filter optional.

    `request_id` finds that one call wherever it is in time (the range does not apply; the other
    filters do). `hours`, when given, are the UTC hours of the range that can hold matches (the
    caller knows them from the hourly aggregates): only those hours' rows are read, for a rare
    service, model or feature that no index walks in order. An empty `hours` selects nothing.
    """

    project_id: int
    start: datetime
    end: datetime
    sort: str = "time"
    request_id: str = ""
    environment_id: int | None = None
    service: str = ""
    model: str = ""
    feature: str = ""
    user_id: str = ""
    status: str = ""
    error_type: str = ""
    http_status: int | None = None
    batch: bool | None = None  # None: batch and online calls
    min_latency_ms: float | None = None
    min_cost_usd: Decimal | None = None
    hours: tuple[datetime, ...] | None = None

    def __post_init__(self) -> None:
        if self.sort not in SORT_SQL:
            raise ValueError(f"unknown sort {self.sort!r}: one of {', '.join(SORT_SQL)}")


@dataclass
class Call:
    """One row of the explorer: a stored event, as listed (no prompt or response: none is stored)."""

    id: int
    timestamp: datetime
    request_id: str
    environment_id: int
    service: str
    feature: str
    user_id: str
    model: str
    provider: str
    status: str
    error_type: str
    http_status: int | None
    stop_reason: str
    batch: bool
    service_tier: str
    latency_ms: float
    time_to_first_token_ms: float | None
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cost_usd: Decimal | None
    cache_savings_usd: Decimal | None
    client_cost_usd: Decimal | None
    price_source: str
    metadata: dict[str, str] | None
    sort_key: Any  # the value of the selection's order: datetime, float or int
    # The environment's name: ingest_event holds its id only; the caller, which has the
    # project's names at hand (projects.selectors.environment_ids), fills it in.
    environment: str = ""

    @property
    def pk(self) -> int:
        return self.id

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens


@dataclass(frozen=True)
class _Where:
    """A selection as SQL: a WHERE clause over ingest_event (and its parameters), and its order."""

    where: str
    params: tuple[Any, ...]
    sort: str
    # Filtered on a value with an index of its own whose values each have few rows (a user):
    # read those rows and sort them, rather than walk a sort index hoping to meet them.
    few_rows: bool = False
    # Read hour by hour (a rare service, model or feature): no index walks the rows in order.
    by_hours: bool = False


def _where(selection: CallSelection) -> _Where | None:
    """The selection's SQL; None when it is certainly empty (an unknown request id, no hours)."""
    where = ["project_id = %s"]
    params: list[Any] = [selection.project_id]
    if selection.request_id:
        # The key table gives the timestamp, so the event is read from its one partition; the
        # range does not apply (a request id is looked up wherever it is).
        at = request_timestamp(project_id=selection.project_id, request_id=selection.request_id)
        if at is None:
            return None
        where += ['"timestamp" = %s', "request_id = %s"]
        params += [at, selection.request_id]
    else:
        where += ['"timestamp" >= %s', '"timestamp" < %s']
        params += [selection.start, selection.end]
    if selection.environment_id is not None:
        where.append("environment_id = %s")
        params.append(selection.environment_id)
    for column, value in (
        ("service", selection.service),
        ("model", selection.model),
        ("feature", selection.feature),
        ("user_id", selection.user_id),
        ("status", selection.status),
        ("error_type", selection.error_type),
    ):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    if selection.http_status is not None:
        where.append("http_status = %s")
        params.append(selection.http_status)
    if selection.batch is not None:
        where.append("batch" if selection.batch else "NOT batch")
    if selection.min_latency_ms is not None:
        where.append("latency_ms >= %s")
        params.append(selection.min_latency_ms)
    if selection.min_cost_usd is not None:
        # On the cost index's expression; an unpriced call (-1) never passes a minimum cost.
        where.append(f"{SORT_SQL['cost']} >= %s")
        params.append(int(selection.min_cost_usd * COST_UNITS_PER_USD))
    few_rows = bool(selection.user_id or selection.request_id)
    if selection.hours is not None:
        if not selection.hours:
            return None
        spans = " OR ".join(['("timestamp" >= %s AND "timestamp" < %s)'] * len(selection.hours))
        where.append(f"({spans})")
        params += [bound for hour in selection.hours for bound in (hour, hour + timedelta(hours=1))]
        return _Where(
            where=" AND ".join(where), params=tuple(params), sort=selection.sort, few_rows=True, by_hours=True
        )
    return _Where(where=" AND ".join(where), params=tuple(params), sort=selection.sort, few_rows=few_rows)


def _calls_read(selection: _Where, *, after: tuple[Any, int] | None, limit: int) -> list[Call]:
    key = SORT_SQL[selection.sort]
    where, params = selection.where, list(selection.params)
    if after is not None:
        value, event_id = after
        if selection.sort == "time":
            # The plain bound is what partition pruning and the (project_id, "timestamp") index
            # use; the OR then breaks ties on id.
            where += ' AND "timestamp" <= %s AND ("timestamp" < %s OR id < %s)'
            params += [value, value, event_id]
        else:
            # A row comparison: an index condition on the (project_id, key, id) index.
            where += f" AND ({key}, id) < (%s, %s)"
            params += [value, event_id]
    order = key
    if selection.by_hours and selection.sort == "time":
        order = f"({key} + interval '0 s')"  # the hours' rows are found, then sorted (as below)
    elif selection.few_rows and selection.sort != "time":
        # `+ 0` hides the key from the sort index (same order, no index has that expression):
        # PostgreSQL's estimate for a user is the average user's share, so for a rare user it
        # would walk the whole cost index of the range (8 s at 10M events) for a handful of rows.
        # The user's index then finds the rows, and they are sorted (bench/pages.py).
        order = f"({key} + 0)"
    sql = f"SELECT {_SELECT}, {key} AS sort_key FROM ingest_event WHERE {where} ORDER BY {order} DESC, id DESC LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return [Call(*row) for row in cursor.fetchall()]


def calls_read(selection: CallSelection, *, after: tuple[Any, int] | None, limit: int) -> list[Call]:
    """Up to `limit` calls of the selection, in its order, strictly after the keyset `after`
    (the (sort_key, id) of the last call already read)."""
    where = _where(selection)
    return [] if where is None else _calls_read(where, after=after, limit=limit)


def calls_iter(selection: CallSelection, *, chunk: int) -> Iterator[Call]:
    """Every call of the selection in order, read `chunk` rows at a time by keyset (constant memory)."""
    where = _where(selection)
    if where is None:
        return
    after = None
    while True:
        rows = _calls_read(where, after=after, limit=chunk)
        yield from rows
        if len(rows) < chunk:
            return
        after = (rows[-1].sort_key, rows[-1].id)
