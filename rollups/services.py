"""Rollup: dirty hours -> hourly aggregates -> daily aggregates.

Invariants (each has a test in tests/rollups/):
- Exactly once: an hour is always recomputed *whole* from raw events and its rows are
  replaced, never incremented, so re-running, running concurrently, or re-rolling an
  hour after a late event gives the same numbers as a fresh computation.
- Nothing is missed: ingest writes a dirty-hour marker in the transaction of its
  events. A pass claims markers with DELETE ... RETURNING (FOR UPDATE SKIP LOCKED) in
  the same transaction that rewrites the hours, so a marker committed after the claim
  stays for the next pass, and a crash rolls the claim back with everything else.
- Concurrent passes serialise per project-hour and per project-day with transaction
  advisory locks taken in a fixed order (all hours sorted, then all days sorted: no
  deadlock). Each recompute statement starts after its locks are held, so under READ
  COMMITTED it sees every hour another pass committed before it.
- Daily rows are sums of the day's hourly rows (histograms merge exactly), so a day is
  as right as its hours.
- Latency sums and histograms (latency, time to first token) cover online calls only;
  Message Batches results are counted everywhere else and their turnaround is summed
  apart (`batch_latency_sum_ms`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from pricing.services import TOKEN_FIELDS
from rollups.models import RollupState
from rollups.sketch import bucket_sql

logger = logging.getLogger(__name__)

CLAIM_BATCH = 2000  # markers per transaction (STYLE 13: cap each batch, the next continues)
_HOUR_LOCK_CLASS = 1
_DAY_LOCK_CLASS = 2

_DIMS = "project_id, environment_id, service, model, feature"
_SUMS = """
    requests, errors, input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens,
    cache_write_5m_tokens, cache_write_1h_tokens, cache_hits, batch_requests, cost_usd, cache_savings_usd,
    unpriced_requests, latency_sum_ms, batch_latency_sum_ms, rate_limited_requests
"""
# The lowest remaining/limit ratio (0..1) of the `anthropic-ratelimit-*` headers reported in a row;
# NULL when no call reported that pair. A minimum of minimums is the minimum: days and slices
# merge them exactly, like the sums.
# The additive integer sums of every aggregate row (in this order: rollups.selectors reads them
# positionally) and its two exact money sums.
SUM_FIELDS = (
    "requests",
    "errors",
    *TOKEN_FIELDS,
    "cache_hits",
    "batch_requests",
    "unpriced_requests",
    "rate_limited_requests",
)
DECIMAL_FIELDS = ("cost_usd", "cache_savings_usd")
HEADROOM_MINS = (
    "ratelimit_requests_headroom_min",
    "ratelimit_input_tokens_headroom_min",
    "ratelimit_output_tokens_headroom_min",
)
_MINS = ", ".join(f"min({n}) AS {n}" for n in HEADROOM_MINS)

_RAW_SUMS = """
           count(*) AS requests,
           count(*) FILTER (WHERE status = 'error') AS errors,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(cache_read_input_tokens) AS cache_read_input_tokens,
           sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
           sum(cache_write_5m_tokens) AS cache_write_5m_tokens,
           sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
           count(*) FILTER (WHERE cache_read_input_tokens > 0) AS cache_hits,
           count(*) FILTER (WHERE batch) AS batch_requests,
           sum(cost_usd) AS cost_usd, sum(cache_savings_usd) AS cache_savings_usd,
           count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_requests,
           coalesce(sum(latency_ms::numeric) FILTER (WHERE NOT batch), 0) AS latency_sum,
           coalesce(sum(latency_ms::numeric) FILTER (WHERE batch), 0) AS batch_latency_sum,
           count(*) FILTER (WHERE http_status = 429) AS rate_limited_requests,
           min(requests_headroom) AS ratelimit_requests_headroom_min,
           min(input_tokens_headroom) AS ratelimit_input_tokens_headroom_min,
           min(output_tokens_headroom) AS ratelimit_output_tokens_headroom_min"""
_SUM_NAMES = [n.strip().removesuffix("_ms") for n in _SUMS.split(",")]
_RESUM = ", ".join(f"sum({n}) AS {n}" for n in _SUM_NAMES) + ", " + _MINS
# The float sums (latency), re-summed from stored float8 values: (expression in _RESUM, stored column).
_FLOAT_SUMS = (("sum(latency_sum)", "latency_sum_ms"), ("sum(batch_latency_sum)", "batch_latency_sum_ms"))

# One statement per dirty (project, day). The day's raw events are read once (one range
# scan, which is one partition) and grouped once by (hour, dimensions, latency bucket, error
# type and HTTP status of errors); that grouping is then regrouped into the claimed hours'
# rows, the day's rows, the day's slices, and the day's spend per end user. Reading the day
# whole is what the per-user spend needs anyway, and it beats one index scan per hour: each
# of those visits the heap in index order, a random page per event when events were not
# written in time order.
#
# Slices (rollups_dailyslice) are the day's rows rolled up over every subset of (environment,
# service, model): `dims` says which are kept (ENV | SERVICE | MODEL bits), the others hold
# 0 / ''. A page with no feature filter reads the slice that has exactly the dimensions it
# filters or groups by, e.g. 1 row a day for unfiltered totals instead of one per
# (environment, service, model, feature).
#
# Latency is summed as numeric (exact) so re-runs agree to the bit whatever the order; error
# maps count failed calls only (the Errors page's "errors by HTTP status").
SLICE_ENV, SLICE_SERVICE, SLICE_MODEL = 4, 2, 1

_X_KEYS = "hour_start, environment_id, service, model, feature"


def _rows(
    name: str, sums: str, hist: str, ttft: str, errors: str, keys: str, table: str, columns: str, select_keys: str
) -> str:
    """CTEs writing rows of `table` from four sources keyed by `keys`: `sums` (one row per key),
    `hist` and `ttft` (one row per key and latency / time-to-first-token bucket, count n) and
    `errors` (per key, err_type and err_code, count n). A key may have no histogram rows (only
    batch calls, no streamed call): its arrays are empty."""
    return f"""
{name}_h AS (
    SELECT {keys}, array_agg(bucket ORDER BY bucket) AS idx, array_agg(n ORDER BY bucket) AS cnt
    FROM {hist} GROUP BY {keys}
), {name}_t AS (
    SELECT {keys}, array_agg(bucket ORDER BY bucket) AS tidx, array_agg(n ORDER BY bucket) AS tcnt
    FROM {ttft} GROUP BY {keys}
), {name}_e AS (
    SELECT {keys}, jsonb_object_agg(err_type, n) AS m
    FROM (SELECT {keys}, err_type, sum(n) AS n FROM {errors} WHERE err_type IS NOT NULL
          GROUP BY {keys}, err_type) e GROUP BY {keys}
), {name}_c AS (
    SELECT {keys}, jsonb_object_agg(err_code::text, n) AS m
    FROM (SELECT {keys}, err_code, sum(n) AS n FROM {errors} WHERE err_code IS NOT NULL
          GROUP BY {keys}, err_code) c GROUP BY {keys}
), {name}_ins AS (
    INSERT INTO {table} ({columns}, {_SUMS}, latency_hist_idx, latency_hist_cnt, ttft_hist_idx, ttft_hist_cnt,
                         errors_by_type, http_status_counts, {", ".join(HEADROOM_MINS)})
    SELECT {select_keys}, requests, errors, input_tokens, output_tokens, cache_read_input_tokens,
           cache_creation_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_hits, batch_requests,
           coalesce(cost_usd, 0), coalesce(cache_savings_usd, 0), unpriced_requests, latency_sum::float8,
           batch_latency_sum::float8, rate_limited_requests, coalesce(idx, '{{}}'), coalesce(cnt, '{{}}'), coalesce(tidx, '{{}}'),
           coalesce(tcnt, '{{}}'), coalesce({name}_e.m, '{{}}'::jsonb), coalesce({name}_c.m, '{{}}'::jsonb),
           {", ".join(HEADROOM_MINS)}
    FROM {sums} LEFT JOIN {name}_h USING ({keys}) LEFT JOIN {name}_t USING ({keys})
         LEFT JOIN {name}_e USING ({keys}) LEFT JOIN {name}_c USING ({keys})
    -- GROUPING SETS give the empty set a row even when there is nothing to group: no calls, no row.
    WHERE requests > 0
    RETURNING 1
)"""


_DAY_KEYS = "environment_id, service, model, feature"
_SLICE_KEYS = "dims, environment_id, service, model"


def _slice_sets(extra: str) -> tuple[str, str]:
    """The `dims` mask and the 8 grouping sets over (environment, service, model), each with `extra` kept."""
    sets = []
    for mask in range(7, -1, -1):
        kept = [
            c
            for bit, c in ((SLICE_ENV, "environment_id"), (SLICE_SERVICE, "service"), (SLICE_MODEL, "model"))
            if mask & bit
        ]
        sets.append(f"({', '.join([*kept, *([extra] if extra else [])])})")
    dims = (
        f"{SLICE_ENV} * (1 - GROUPING(environment_id)) + {SLICE_SERVICE} * (1 - GROUPING(service))"
        f" + {SLICE_MODEL} * (1 - GROUPING(model))"
    )
    head = (
        f"{dims} AS dims, coalesce(environment_id, 0) AS environment_id, coalesce(service, '') AS service, "
        f"coalesce(model, '') AS model"
    )
    return head, f"GROUPING SETS ({', '.join(sets)})"


_SLICE_HEAD, _SLICE_SETS = _slice_sets("")
_, _SLICE_BUCKET_SETS = _slice_sets("bucket")
_, _SLICE_ERROR_SETS = _slice_sets("err_type, err_code")


def _headroom_sql(kind: str) -> str:
    """remaining / limit of one `anthropic-ratelimit-<kind>-*` pair, at most 1 (remaining above the
    limit would be a client's mistake); NULL when either is missing or the limit is 0 (says nothing)."""
    # Not least/greatest alone: they ignore a NULL argument. Ingest keeps both values >= 0.
    return (
        f"CASE WHEN ratelimit_{kind}_limit > 0 AND ratelimit_{kind}_remaining IS NOT NULL "
        f"THEN least(ratelimit_{kind}_remaining::float8 / ratelimit_{kind}_limit, 1) END"
    )


# Sums and histograms are grouped apart: the sums by (hour, dimensions) are few groups with
# many aggregates, the histogram by (hour, dimensions, bucket) many groups with one count.
# Batch calls get no latency bucket and no TTFT bucket (NULL): they stay out of both histograms.
_EV_SELECT = f"""
    SELECT date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour_start,
           environment_id, service, model, feature, user_id, status, cost_usd,
           CASE WHEN NOT batch THEN {bucket_sql("latency_ms")} END AS bucket,
           CASE WHEN NOT batch THEN {bucket_sql("time_to_first_token_ms")} END AS tbucket,
           error_type, http_status, batch, latency_ms, input_tokens, output_tokens, cache_read_input_tokens,
           cache_creation_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_savings_usd,
           {_headroom_sql("requests")} AS requests_headroom,
           {_headroom_sql("input_tokens")} AS input_tokens_headroom,
           {_headroom_sql("output_tokens")} AS output_tokens_headroom
    FROM ingest_event
    WHERE project_id = %(project)s AND "timestamp" >= %(start)s AND "timestamp" < %(end)s"""
_HOUR_GROUPS = f"""
hs AS (
    SELECT {_X_KEYS}, {_RAW_SUMS} FROM ev GROUP BY {_X_KEYS}
), hb AS (
    SELECT {_X_KEYS}, bucket, count(*) AS n FROM ev WHERE bucket IS NOT NULL GROUP BY {_X_KEYS}, bucket
), ht AS (
    SELECT {_X_KEYS}, tbucket AS bucket, count(*) AS n FROM ev WHERE tbucket IS NOT NULL GROUP BY {_X_KEYS}, tbucket
), he AS (
    SELECT {_X_KEYS}, coalesce(nullif(error_type, ''), 'unknown') AS err_type, http_status AS err_code,
           count(*) AS n
    FROM ev WHERE status = 'error' GROUP BY {_X_KEYS}, err_type, err_code
)"""
# A day's latency sum is the sum of its hours' stored (float8) sums, taken exactly: the same
# number whether the day is summed here from the hours just computed or, in DAY_FROM_HOURS_SQL,
# from the hourly rows stored.
_DAY_RESUM = _RESUM
_STORED_RESUM = _RESUM
for _expr, _column in _FLOAT_SUMS:
    _DAY_RESUM = _DAY_RESUM.replace(_expr, _expr.replace(")", "::float8::numeric)"))
    # Sums read back from stored aggregate rows (the day from its hours).
    _STORED_RESUM = _STORED_RESUM.replace(_expr, f"sum({_column}::numeric)")
_SLICES_AND_ROWS = f"""
ss AS (
    SELECT {_SLICE_HEAD}, {_RESUM} FROM ds GROUP BY {_SLICE_SETS}
), sb AS (
    SELECT {_SLICE_HEAD}, bucket, sum(n) AS n FROM db GROUP BY {_SLICE_BUCKET_SETS}
), st AS (
    SELECT {_SLICE_HEAD}, bucket, sum(n) AS n FROM dt GROUP BY {_SLICE_BUCKET_SETS}
), se AS (
    SELECT {_SLICE_HEAD}, err_type, err_code, sum(n) AS n FROM de GROUP BY {_SLICE_ERROR_SETS}
),{
    _rows(
        "d",
        "ds",
        "db",
        "dt",
        "de",
        _DAY_KEYS,
        "rollups_dailyaggregate",
        f"day, {_DIMS}",
        "%(day)s, %(project)s, environment_id, service, model, feature",
    )
},
{
    _rows(
        "sl",
        "ss",
        "sb",
        "st",
        "se",
        _SLICE_KEYS,
        "rollups_dailyslice",
        "day, project_id, dims, environment_id, service, model",
        "%(day)s, %(project)s, dims, environment_id, service, model",
    )
},
u_ins AS (
    INSERT INTO rollups_dailyuserspend (day, project_id, environment_id, user_id, requests, errors, cost_usd,
                                        unpriced_requests)
    SELECT %(day)s, %(project)s, environment_id, user_id, count(*), count(*) FILTER (WHERE status = 'error'),
           coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL)
    FROM {{users}} WHERE user_id <> '' AND %(whole_day)s GROUP BY environment_id, user_id
    RETURNING 1
)"""

# The whole day from its raw events: claimed hours, the day, its slices, its users.
DAY_SQL = f"""
WITH ev AS MATERIALIZED ({_EV_SELECT}
),{_HOUR_GROUPS}, ths AS (
    SELECT * FROM hs WHERE hour_start = ANY(%(hours)s::timestamptz[])
), thb AS (
    SELECT * FROM hb WHERE hour_start = ANY(%(hours)s::timestamptz[])
), tht AS (
    SELECT * FROM ht WHERE hour_start = ANY(%(hours)s::timestamptz[])
), the AS (
    SELECT * FROM he WHERE hour_start = ANY(%(hours)s::timestamptz[])
), ds AS (
    SELECT {_DAY_KEYS}, {_DAY_RESUM} FROM hs WHERE %(whole_day)s GROUP BY {_DAY_KEYS}
), db AS (
    SELECT {_DAY_KEYS}, bucket, sum(n) AS n FROM hb WHERE %(whole_day)s GROUP BY {_DAY_KEYS}, bucket
), dt AS (
    SELECT {_DAY_KEYS}, bucket, sum(n) AS n FROM ht WHERE %(whole_day)s GROUP BY {_DAY_KEYS}, bucket
), de AS (
    SELECT {_DAY_KEYS}, err_type, err_code, sum(n) AS n FROM he WHERE %(whole_day)s
    GROUP BY {_DAY_KEYS}, err_type, err_code
),{
    _rows(
        "h",
        "ths",
        "thb",
        "tht",
        "the",
        _X_KEYS,
        "rollups_hourlyaggregate",
        f"hour_start, {_DIMS}",
        "hour_start, %(project)s, environment_id, service, model, feature",
    )
},
{_SLICES_AND_ROWS.replace("{users}", "ev")}
SELECT (SELECT count(*) FROM h_ins), (SELECT count(*) FROM d_ins), (SELECT count(*) FROM sl_ins),
       (SELECT count(*) FROM u_ins)
"""  # noqa: S608 - identifiers are the constants above

# A day with only a few dirty hours (the steady state: the current hour): those hours from
# their raw events (start/end span just them) ...
HOURS_SQL = f"""
WITH ev AS MATERIALIZED ({_EV_SELECT} AND date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                                          = ANY(%(hours)s::timestamptz[])
),{_HOUR_GROUPS},{
    _rows(
        "h",
        "hs",
        "hb",
        "ht",
        "he",
        _X_KEYS,
        "rollups_hourlyaggregate",
        f"hour_start, {_DIMS}",
        "hour_start, %(project)s, environment_id, service, model, feature",
    )
}
SELECT count(*) FROM h_ins
"""  # noqa: S608

# Sums and error counts read back from stored aggregate rows `a` (the day from its hours, or
# slices from days): the jsonb maps become (err_type, err_code, n) rows again.
_STORED_ERRORS = """(SELECT a.*, j.key AS err_type, NULL::int AS err_code, j.value::bigint AS n
          FROM a, jsonb_each_text(errors_by_type) AS j
          UNION ALL
          SELECT a.*, NULL, j.key::int, j.value::bigint FROM a, jsonb_each_text(http_status_counts) AS j) e"""

# ... then the day from its stored hourly rows (a statement of its own, so it sees them), and
# its users from the day's raw events (user spend is kept per day only).
DAY_FROM_HOURS_SQL = f"""
WITH a AS (
    SELECT * FROM rollups_hourlyaggregate
    WHERE project_id = %(project)s AND hour_start >= %(start)s AND hour_start < %(end)s
), ds AS (
    SELECT {_DAY_KEYS}, {_STORED_RESUM} FROM a GROUP BY {_DAY_KEYS}
), db AS (
    SELECT {_DAY_KEYS}, u.bucket, sum(u.n) AS n
    FROM a, unnest(latency_hist_idx, latency_hist_cnt) AS u(bucket, n) GROUP BY {_DAY_KEYS}, u.bucket
), dt AS (
    SELECT {_DAY_KEYS}, u.bucket, sum(u.n) AS n
    FROM a, unnest(ttft_hist_idx, ttft_hist_cnt) AS u(bucket, n) GROUP BY {_DAY_KEYS}, u.bucket
), de AS (
    SELECT {_DAY_KEYS}, err_type, err_code, sum(n) AS n
    FROM {_STORED_ERRORS}
    GROUP BY {_DAY_KEYS}, err_type, err_code
), users AS (
    SELECT environment_id, user_id, status, cost_usd FROM ingest_event
    WHERE project_id = %(project)s AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
),{_SLICES_AND_ROWS.replace("{users}", "users")}
SELECT (SELECT count(*) FROM d_ins), (SELECT count(*) FROM sl_ins), (SELECT count(*) FROM u_ins)
"""  # noqa: S608

# Up to this many dirty hours, a day takes the HOURS_SQL + DAY_FROM_HOURS_SQL path; more, and
# reading the whole day once (DAY_SQL) is cheaper.
PARTIAL_DAY_MAX_HOURS = 6

# Rows of the buckets being recomputed go first, in their own statement: a DELETE in a CTE
# and the INSERT of the same keys in one statement would collide on the unique index.
DELETE_HOURS_SQL = """
WITH c AS (
    SELECT * FROM unnest(%(projects)s::bigint[], %(hours)s::timestamptz[]) AS c(project_id, hour_start)
)
DELETE FROM rollups_hourlyaggregate a USING c WHERE a.project_id = c.project_id AND a.hour_start = c.hour_start
"""
DELETE_DAYS_SQL = """
WITH d AS (
    SELECT * FROM unnest(%(projects)s::bigint[], %(days)s::date[]) AS d(project_id, day)
), a AS (
    DELETE FROM rollups_dailyaggregate a USING d WHERE a.project_id = d.project_id AND a.day = d.day
), sl AS (
    DELETE FROM rollups_dailyslice s USING d WHERE s.project_id = d.project_id AND s.day = d.day
)
DELETE FROM rollups_dailyuserspend u USING d WHERE u.project_id = d.project_id AND u.day = d.day
"""

CLAIM_SQL = """
WITH claimed AS (
    DELETE FROM ingest_dirtyhour WHERE id IN (
        SELECT id FROM ingest_dirtyhour ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
    ) RETURNING project_id, hour_start
)
SELECT DISTINCT project_id, hour_start FROM claimed ORDER BY project_id, hour_start
"""


@dataclass
class RollupResult:
    hours: int = 0
    days: int = 0
    passes: int = 0
    project_ids: list[int] = field(default_factory=list)


# Test hook: called inside the rollup transaction after the hours are rewritten (None in production).
_after_hours_hook: Callable[[list[tuple[int, datetime]]], None] | None = None


def _lock_key(klass: int, project_id: int, epoch: int) -> int:
    # One bigint per (class, project, bucket): bucket numbers are hours or days since 1970.
    return (klass << 60) | ((project_id & 0xFFFFFFF) << 32) | (epoch & 0xFFFFFFFF)


# The day's events are grouped in memory: enough for a few hundred thousand events a day
# without spilling to disk (per sort/hash node of the rollup's own transaction only).
ROLLUP_WORK_MEM = "64MB"


def _by_day(hours: list[tuple[int, datetime]]) -> dict[tuple[int, date], list[datetime]]:
    grouped: dict[tuple[int, date], list[datetime]] = {}
    for project_id, hour in hours:
        grouped.setdefault((project_id, hour.astimezone(UTC).date()), []).append(hour)
    return grouped


def _day_recompute(
    cursor: CursorWrapper, *, project_id: int, day: date, hours: list[datetime], whole_day: bool, sql: str = DAY_SQL
) -> None:
    """Rewrite `hours` of the project's `day` and, if `whole_day`, its daily rows, slices and users."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    params: dict[str, Any] = {
        "project": project_id,
        "day": day,
        "start": start,
        "end": start + timedelta(days=1),
        "hours": hours,
        "whole_day": whole_day,
    }
    # Every join in these statements is between CTE results the planner can't count (it guesses
    # one row after the hour filter and picks nested loops, quadratic in the day's groups).
    cursor.execute("SET LOCAL enable_nestloop = off")
    if sql is DAY_SQL and whole_day and len(hours) <= PARTIAL_DAY_MAX_HOURS:
        cursor.execute(HOURS_SQL, {**params, "start": min(hours), "end": max(hours) + timedelta(hours=1)})
        cursor.execute(DAY_FROM_HOURS_SQL, params)
    else:
        cursor.execute(sql, params)
    cursor.execute("SET LOCAL enable_nestloop = on")


def hours_rollup(*, hours: list[tuple[int, datetime]]) -> RollupResult:
    """Recompute the given (project_id, hour_start) buckets and their days, in the caller's transaction."""
    if not hours:
        return RollupResult()
    hours = sorted(set(hours))
    by_day = _by_day(hours)
    days = sorted(by_day)
    with connection.cursor() as cursor:
        locks = [_lock_key(_HOUR_LOCK_CLASS, p, int(h.timestamp()) // 3600) for p, h in hours]
        locks += [_lock_key(_DAY_LOCK_CLASS, p, d.toordinal()) for p, d in days]
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, o)", [locks]
        )
        cursor.execute("SELECT set_config('work_mem', %s, true)", [ROLLUP_WORK_MEM])
        hour_params: dict[str, Any] = {"projects": [p for p, _ in hours], "hours": [h for _, h in hours]}
        cursor.execute(DELETE_HOURS_SQL, hour_params)
        day_params: dict[str, Any] = {"projects": [p for p, _ in days], "days": [d for _, d in days]}
        cursor.execute(DELETE_DAYS_SQL, day_params)
        for (project_id, day), day_hours in by_day.items():
            _day_recompute(cursor, project_id=project_id, day=day, hours=day_hours, whole_day=True)
        if _after_hours_hook is not None:
            _after_hours_hook(hours)
    return RollupResult(hours=len(hours), days=len(days))


# A lane claims only the markers of its own UTC days (day number modulo the lane count), so
# lanes never recompute the same day twice; each is the one-lane algorithm on a subset of the
# days, in its own transaction on its own connection, exactly like concurrent passes.
CLAIM_LANE_SQL = """
WITH claimed AS (
    DELETE FROM ingest_dirtyhour WHERE id IN (
        SELECT id FROM ingest_dirtyhour
        WHERE mod(floor(extract(epoch FROM hour_start) / 86400)::bigint, %s) = %s
        ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
    ) RETURNING project_id, hour_start
)
SELECT DISTINCT project_id, hour_start FROM claimed ORDER BY project_id, hour_start
"""


def _lane_run(*, lane: int | None, lanes: int, max_batches: int | None, deadline: float | None) -> RollupResult:
    total = RollupResult()
    while (max_batches is None or total.passes < max_batches) and (deadline is None or time.monotonic() < deadline):
        with transaction.atomic(), connection.cursor() as cursor:
            if lane is None:
                cursor.execute(CLAIM_SQL, [CLAIM_BATCH])
            else:
                cursor.execute(CLAIM_LANE_SQL, [lanes, lane, CLAIM_BATCH])
            hours = [(project_id, hour) for project_id, hour in cursor.fetchall()]
            if not hours:
                break
            result = hours_rollup(hours=hours)
        total.hours += result.hours
        total.days += result.days
        total.passes += 1
        total.project_ids = sorted(set(total.project_ids) | {p for p, _ in hours})
    return total


def _lane_thread(lane: int, lanes: int, deadline: float | None) -> RollupResult:
    try:
        return _lane_run(lane=lane, lanes=lanes, max_batches=None, deadline=deadline)
    finally:
        connection.close()  # this thread's own connection


def dirty_hours_rollup(
    *, max_batches: int | None = None, max_seconds: float | None = None, lanes: int | None = None
) -> RollupResult:
    """One pass: claim dirty markers in batches and recompute their hours, until none is left
    (or `max_seconds` have gone by: the periodic task stops there and the next run continues,
    so a backlog never runs into the task's time limit mid-batch).

    `lanes` (default TALLY_ROLLUP_LANES) threads work at once, each on its own connection and
    its own share of the days: a backlog (a re-price, a late batch upload) rolls up on every
    core PostgreSQL has. With `max_batches` (tests, debugging) one lane claims in marker order.

    Idempotent: keyed by (project_id, hour_start); markers locked by a concurrent pass are
    skipped here (that pass owns them).
    """
    from django.conf import settings

    lanes = settings.TALLY_ROLLUP_LANES if lanes is None else lanes
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    if lanes <= 1 or max_batches is not None:
        total = _lane_run(lane=None, lanes=1, max_batches=max_batches, deadline=deadline)
    else:
        with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="rollup-lane") as pool:
            results = list(pool.map(_lane_thread, range(lanes), [lanes] * lanes, [deadline] * lanes))
        total = RollupResult()
        for result in results:
            total.hours += result.hours
            total.days += result.days
            total.passes += result.passes
            total.project_ids = sorted(set(total.project_ids) | set(result.project_ids))
    RollupState.objects.update_or_create(pk=1, defaults={"last_pass_finished_at": timezone.now()})
    return total


def rollup_until_current(*, timeout_s: float = 600.0, progress: Callable[[str], None] | None = None) -> RollupResult:
    """Return once every event committed before the call is in the aggregates.

    Runs passes until no marker that existed at the start remains (markers claimed by a
    concurrent pass are waited for: they vanish when that pass commits).
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM ingest_dirtyhour")
        horizon = cursor.fetchone()[0]
    total = RollupResult()
    deadline = time.monotonic() + timeout_s
    while True:
        result = dirty_hours_rollup()
        total.hours += result.hours
        total.days += result.days
        total.passes += result.passes
        if progress and result.hours:
            progress(f"rolled up {result.hours} hours ({result.days} days)")
        with connection.cursor() as cursor:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM ingest_dirtyhour WHERE id <= %s)", [horizon])
            if not cursor.fetchone()[0]:
                return total
        if time.monotonic() > deadline:
            raise TimeoutError("dirty hours are still claimed by another rollup; try again")
        time.sleep(0.2)


@dataclass
class VerifyResult:
    hours_checked: int = 0
    days_checked: int = 0
    pending_hours: int = 0
    differences: list[str] = field(default_factory=list)


_VERIFY_COLUMNS = [
    *SUM_FIELDS,
    *DECIMAL_FIELDS,
    "latency_hist_idx",
    "latency_hist_cnt",
    "ttft_hist_idx",
    "ttft_hist_cnt",
    "errors_by_type",
    "http_status_counts",
    *HEADROOM_MINS,
]
_VERIFY_FLOATS = ["latency_sum_ms", "batch_latency_sum_ms"]


def _compare_sql(
    stored: str, fresh: str, bucket: str, keys: list[str], columns: list[str], float_columns: list[str]
) -> str:
    key_list = ", ".join(keys)
    exact = " OR ".join(f"a.{c} IS DISTINCT FROM b.{c}" for c in columns)
    floats = " OR ".join(f"abs(a.{c} - b.{c}) > 1e-6 * greatest(abs(a.{c}), abs(b.{c}), 1)" for c in float_columns)
    mismatch = " OR ".join(x for x in (exact, floats) if x)
    return f"""
        SELECT {", ".join(f"coalesce(a.{k}, b.{k})" for k in keys)},
               CASE WHEN a.project_id IS NULL THEN 'missing from stored aggregates'
                    WHEN b.project_id IS NULL THEN 'stored but not in raw events'
                    ELSE 'values differ' END
        FROM (SELECT * FROM {stored} WHERE (project_id, {bucket}) IN (SELECT project_id, {bucket} FROM vb_{bucket}))
             a FULL JOIN {fresh} b USING ({key_list})
        WHERE a.project_id IS NULL OR b.project_id IS NULL OR {mismatch}
        ORDER BY 1, 2 LIMIT 200
    """


def rollups_verify(*, start: datetime | None = None, end: datetime | None = None) -> VerifyResult:
    """Recompute aggregates from raw events (into temp tables, in one snapshot) and compare.

    Hours with a pending dirty marker are skipped (counted in `pending_hours`): they are
    not expected to match until the next pass.
    """
    start = start or datetime(1970, 1, 1, tzinfo=UTC)
    end = end or datetime(9999, 1, 1, tzinfo=UTC)
    result = VerifyResult(differences=[])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute(
            "SELECT count(DISTINCT (project_id, hour_start)) FROM ingest_dirtyhour "
            "WHERE hour_start >= %s AND hour_start < %s",
            [start, end],
        )
        result.pending_hours = cursor.fetchone()[0]
        cursor.execute(
            """
            CREATE TEMP TABLE vb_hour_start ON COMMIT DROP AS
            SELECT project_id, hour_start FROM (
                SELECT DISTINCT project_id, date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                       AS hour_start FROM ingest_event WHERE "timestamp" >= %(s)s AND "timestamp" < %(e)s
                UNION SELECT project_id, hour_start FROM rollups_hourlyaggregate
                WHERE hour_start >= %(s)s AND hour_start < %(e)s
            ) x
            WHERE (project_id, hour_start) NOT IN (SELECT project_id, hour_start FROM ingest_dirtyhour)
              -- Raw events past retention are gone on purpose; their aggregates are kept.
              AND hour_start >= (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                                        - p.raw_retention_days * interval '1 day'
                                 FROM projects_project p WHERE p.id = x.project_id);
            CREATE TEMP TABLE vb_day ON COMMIT DROP AS
            SELECT DISTINCT project_id, (hour_start AT TIME ZONE 'UTC')::date AS day FROM vb_hour_start
            WHERE (project_id, (hour_start AT TIME ZONE 'UTC')::date) NOT IN (
                SELECT project_id, (hour_start AT TIME ZONE 'UTC')::date FROM ingest_dirtyhour);
            CREATE TEMP TABLE verify_hourly (LIKE rollups_hourlyaggregate INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DROP;
            CREATE TEMP TABLE verify_daily (LIKE rollups_dailyaggregate INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DROP;
            CREATE TEMP TABLE verify_daily_users (LIKE rollups_dailyuserspend INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DROP;
            CREATE TEMP TABLE verify_slice (LIKE rollups_dailyslice INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DROP;
        """,
            {"s": start, "e": end},
        )
        cursor.execute("SELECT project_id, hour_start FROM vb_hour_start")
        hours = cursor.fetchall()
        result.hours_checked = len(hours)
        cursor.execute("SELECT project_id, day FROM vb_day")
        whole_days = set(cursor.fetchall())
        result.days_checked = len(whole_days)
        sql = DAY_SQL
        for old, new in (
            ("rollups_hourlyaggregate", "verify_hourly"),
            ("rollups_dailyaggregate", "verify_daily"),
            ("rollups_dailyuserspend", "verify_daily_users"),
            ("rollups_dailyslice", "verify_slice"),
        ):
            sql = sql.replace(old, new)
        cursor.execute("SELECT set_config('work_mem', %s, true)", [ROLLUP_WORK_MEM])
        by_day = _by_day(hours)
        for project_id, day in sorted(set(by_day) | whole_days):
            _day_recompute(
                cursor,
                project_id=project_id,
                day=day,
                hours=by_day.get((project_id, day), []),
                whole_day=(project_id, day) in whole_days,
                sql=sql,
            )
        dims = ["project_id", "environment_id", "service", "model", "feature"]
        checks = [
            (
                "hourly",
                "rollups_hourlyaggregate",
                "verify_hourly",
                "hour_start",
                [*dims, "hour_start"],
                _VERIFY_COLUMNS,
                _VERIFY_FLOATS,
            ),
            ("daily", "rollups_dailyaggregate", "verify_daily", "day", [*dims, "day"], _VERIFY_COLUMNS, _VERIFY_FLOATS),
            (
                "daily slices",
                "rollups_dailyslice",
                "verify_slice",
                "day",
                ["project_id", "dims", "environment_id", "service", "model", "day"],
                _VERIFY_COLUMNS,
                _VERIFY_FLOATS,
            ),
            (
                "daily users",
                "rollups_dailyuserspend",
                "verify_daily_users",
                "day",
                ["project_id", "environment_id", "user_id", "day"],
                ["requests", "errors", "cost_usd", "unpriced_requests"],
                [],
            ),
        ]
        for label, stored, fresh_table, bucket, keys, columns, floats in checks:
            cursor.execute(_compare_sql(stored, fresh_table, bucket, keys, columns, floats))
            for row in cursor.fetchall():
                *key, problem = row
                result.differences.append(f"{label} {dict(zip(keys, key, strict=True))}: {problem}")
    return result


def aggregates_apply_retention(*, now: datetime | None = None, days: int | None = None) -> int:
    """Delete aggregate rows older than TALLY_AGGREGATE_RETENTION_DAYS (default 400). Idempotent."""
    from django.conf import settings

    now = now or timezone.now()
    cutoff = (now - timedelta(days=days or settings.TALLY_AGGREGATE_RETENTION_DAYS)).astimezone(UTC)
    cutoff = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
    deleted = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for table, column, bound in (
            ("rollups_hourlyaggregate", "hour_start", cutoff),
            ("rollups_dailyaggregate", "day", cutoff.date()),
            ("rollups_dailyslice", "day", cutoff.date()),
            ("rollups_dailyuserspend", "day", cutoff.date()),
        ):
            cursor.execute(f"DELETE FROM {table} WHERE {column} < %s", [bound])  # noqa: S608
            deleted += cursor.rowcount
    return deleted


@dataclass
class ForgetUserResult:
    events_deleted: int
    hours_rerolled: int
    user_rows_deleted: int


def user_forget_everywhere(*, project_id: int, user_id: str) -> ForgetUserResult:
    """An end user's deletion request: raw events, per-user aggregates, and re-rolled totals.

    Returns once the aggregates no longer contain the user (their hours are re-rolled now).
    """
    from ingest.services import user_forget

    forgotten = user_forget(project_id=project_id, user_id=user_id)
    with transaction.atomic(), connection.cursor() as cursor:
        # Also rows whose raw events are already past retention (nothing left to re-roll there).
        cursor.execute(
            "DELETE FROM rollups_dailyuserspend WHERE project_id = %s AND user_id = %s", [project_id, user_id]
        )
        rows = cursor.rowcount
    rollup_until_current()
    return ForgetUserResult(
        events_deleted=forgotten.events_deleted, hours_rerolled=forgotten.hours_marked, user_rows_deleted=rows
    )


@dataclass
class RetentionSummary:
    partitions_dropped: list[str]
    events_deleted: int
    aggregate_rows_deleted: int


def retention_apply(*, now: datetime | None = None) -> RetentionSummary:
    """Raw events past each project's retention, then aggregates past theirs. Idempotent."""
    from ingest.services import events_apply_retention

    raw = events_apply_retention(now=now)
    rows = aggregates_apply_retention(now=now)
    return RetentionSummary(
        partitions_dropped=raw.partitions_dropped, events_deleted=raw.events_deleted, aggregate_rows_deleted=rows
    )
