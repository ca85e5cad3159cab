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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from rollups.models import RollupState
from rollups.sketch import BUCKET_SQL

logger = logging.getLogger(__name__)

CLAIM_BATCH = 2000  # markers per transaction (STYLE 13: cap each batch, the next continues)
_HOUR_LOCK_CLASS = 1
_DAY_LOCK_CLASS = 2

_DIMS = "project_id, environment_id, service, model, feature"
_SUMS = """
    requests, errors, input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens,
    cache_write_5m_tokens, cache_write_1h_tokens, cache_hits, batch_requests, cost_usd, cache_savings_usd,
    unpriced_requests, latency_sum_ms
"""

_EV_DIMS = ", ".join(f"ev.{d.strip()}" for d in _DIMS.split(","))
_S_SUMS = ", ".join(f"s.{name.strip()}" for name in _SUMS.split(","))

# Recompute the claimed hours from raw events in one pass: the events of each claimed hour
# (one index range scan per hour) are grouped once by (hour, dimensions, latency bucket),
# which is also the histogram; rolling those rows up by (hour, dimensions) gives the sums.
# Latency is summed as numeric (exact) so re-runs agree to the bit whatever the order.
# Error-type and HTTP-status maps are built from the error events only (the Errors page's
# "errors by HTTP status"; counting every 200 would cost a third pass over all events).
_EVENTS = """
    FROM c CROSS JOIN LATERAL (
        -- A plain join lets the planner hash all of a project's events against every hour
        -- (quadratic); the fence (OFFSET 0) keeps it one index range scan per claimed hour.
        SELECT ev.project_id, ev.environment_id, ev.service, ev.model, ev.feature, ev.status, ev.error_type,
               ev.http_status, ev.batch, ev.latency_ms, ev.input_tokens, ev.output_tokens,
               ev.cache_read_input_tokens, ev.cache_creation_input_tokens, ev.cache_write_5m_tokens,
               ev.cache_write_1h_tokens, ev.cost_usd, ev.cache_savings_usd
        FROM ingest_event ev
        WHERE ev.project_id = c.project_id AND ev."timestamp" >= c.hour_start
          AND ev."timestamp" < c.hour_start + interval '1 hour' {extra}
        OFFSET 0
    ) ev
"""
HOURLY_SQL = f"""
WITH c AS (
    SELECT * FROM unnest(%(projects)s::bigint[], %(hours)s::timestamptz[]) AS c(project_id, hour_start)
), b AS (
    SELECT c.hour_start, {_EV_DIMS}, {BUCKET_SQL} AS bucket,
           count(*) AS requests,
           count(*) FILTER (WHERE status = 'error') AS errors,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(cache_read_input_tokens) AS cache_read_input_tokens,
           sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
           sum(cache_write_5m_tokens) AS cache_write_5m_tokens,
           sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
           count(*) FILTER (WHERE cache_read_input_tokens > 0) AS cache_hits,
           count(*) FILTER (WHERE batch) AS batch_requests,
           coalesce(sum(cost_usd), 0) AS cost_usd,
           coalesce(sum(cache_savings_usd), 0) AS cache_savings_usd,
           count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_requests,
           sum(latency_ms::numeric) AS latency_sum
    {_EVENTS.format(extra="")}
    GROUP BY 1, 2, 3, 4, 5, 6, 7
), errs AS (
    SELECT hour_start, {_DIMS}, jsonb_object_agg(error_type, n) AS m
    FROM (SELECT c.hour_start, {_EV_DIMS}, coalesce(nullif(error_type, ''), 'unknown') AS error_type,
                 count(*) AS n
          {_EVENTS.format(extra="AND ev.status = 'error'")}
          GROUP BY 1, 2, 3, 4, 5, 6, 7) x
    GROUP BY hour_start, {_DIMS}
), codes AS (
    SELECT hour_start, {_DIMS}, jsonb_object_agg(http_status::text, n) AS m
    FROM (SELECT c.hour_start, {_EV_DIMS}, http_status, count(*) AS n
          {_EVENTS.format(extra="AND ev.status = 'error' AND ev.http_status IS NOT NULL")}
          GROUP BY 1, 2, 3, 4, 5, 6, 7) x
    GROUP BY hour_start, {_DIMS}
), s AS (
    SELECT hour_start, {_DIMS},
           sum(requests) AS requests, sum(errors) AS errors, sum(input_tokens) AS input_tokens,
           sum(output_tokens) AS output_tokens, sum(cache_read_input_tokens) AS cache_read_input_tokens,
           sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
           sum(cache_write_5m_tokens) AS cache_write_5m_tokens, sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
           sum(cache_hits) AS cache_hits, sum(batch_requests) AS batch_requests, sum(cost_usd) AS cost_usd,
           sum(cache_savings_usd) AS cache_savings_usd, sum(unpriced_requests) AS unpriced_requests,
           sum(latency_sum)::float8 AS latency_sum_ms,
           array_agg(bucket ORDER BY bucket) AS idx, array_agg(requests ORDER BY bucket) AS cnt
    FROM b GROUP BY hour_start, {_DIMS}
)
INSERT INTO rollups_hourlyaggregate (hour_start, {_DIMS}, {_SUMS}, latency_hist_idx, latency_hist_cnt,
                                     errors_by_type, http_status_counts)
SELECT s.hour_start, s.project_id, s.environment_id, s.service, s.model, s.feature, {_S_SUMS},
       s.idx, s.cnt, coalesce(errs.m, '{{}}'::jsonb), coalesce(codes.m, '{{}}'::jsonb)
FROM s
LEFT JOIN errs USING (hour_start, {_DIMS})
LEFT JOIN codes USING (hour_start, {_DIMS})
"""

# A day = the sum of its hours. Histograms merge by summing counts per bucket index.
DAILY_SQL = f"""
WITH d AS (
    SELECT * FROM unnest(%(projects)s::bigint[], %(days)s::date[]) AS d(project_id, day)
), hrs AS MATERIALIZED (
    SELECT d.day, a.* FROM d JOIN rollups_hourlyaggregate a
      ON a.project_id = d.project_id
     AND a.hour_start >= d.day::timestamp AT TIME ZONE 'UTC'
     AND a.hour_start < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
), sums AS (
    SELECT day, {_DIMS}, sum(requests) AS requests, sum(errors) AS errors, sum(input_tokens) AS input_tokens,
           sum(output_tokens) AS output_tokens, sum(cache_read_input_tokens) AS cache_read_input_tokens,
           sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
           sum(cache_write_5m_tokens) AS cache_write_5m_tokens, sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
           sum(cache_hits) AS cache_hits, sum(batch_requests) AS batch_requests, sum(cost_usd) AS cost_usd,
           sum(cache_savings_usd) AS cache_savings_usd, sum(unpriced_requests) AS unpriced_requests,
           sum(latency_sum_ms::numeric)::float8 AS latency_sum_ms
    FROM hrs GROUP BY day, {_DIMS}
), hist AS (
    SELECT day, {_DIMS}, array_agg(i ORDER BY i) AS idx, array_agg(n ORDER BY i) AS cnt
    FROM (SELECT day, {_DIMS}, u.i, sum(u.n)::bigint AS n
          FROM hrs, unnest(latency_hist_idx, latency_hist_cnt) AS u(i, n)
          GROUP BY day, {_DIMS}, u.i) b
    GROUP BY day, {_DIMS}
), errs AS (
    SELECT day, {_DIMS}, jsonb_object_agg(k, n) AS m
    FROM (SELECT day, {_DIMS}, j.key AS k, sum(j.value::bigint) AS n
          FROM hrs, jsonb_each_text(errors_by_type) AS j GROUP BY 1, 2, 3, 4, 5, 6, 7) x
    GROUP BY day, {_DIMS}
), codes AS (
    SELECT day, {_DIMS}, jsonb_object_agg(k, n) AS m
    FROM (SELECT day, {_DIMS}, j.key AS k, sum(j.value::bigint) AS n
          FROM hrs, jsonb_each_text(http_status_counts) AS j GROUP BY 1, 2, 3, 4, 5, 6, 7) x
    GROUP BY day, {_DIMS}
)
INSERT INTO rollups_dailyaggregate (day, {_DIMS}, {_SUMS}, latency_hist_idx, latency_hist_cnt,
                                    errors_by_type, http_status_counts)
SELECT s.day, s.project_id, s.environment_id, s.service, s.model, s.feature,
       {_S_SUMS},
       h.idx, h.cnt, coalesce(errs.m, '{{}}'::jsonb), coalesce(codes.m, '{{}}'::jsonb)
FROM sums s
JOIN hist h USING (day, {_DIMS})
LEFT JOIN errs USING (day, {_DIMS})
LEFT JOIN codes USING (day, {_DIMS})
"""

# Spend per end user and day, straight from the day's raw events (a per-user hourly table
# would be as large as the events themselves). Only dirty days are recomputed; in steady
# state that is today's events of the projects that received some.
DAILY_USERS_SQL = """
WITH d AS (
    SELECT * FROM unnest(%(projects)s::bigint[], %(days)s::date[]) AS d(project_id, day)
)
INSERT INTO rollups_dailyuserspend (day, project_id, environment_id, user_id, requests, errors, cost_usd,
                                    unpriced_requests)
SELECT d.day, ev.project_id, ev.environment_id, ev.user_id, count(*),
       count(*) FILTER (WHERE ev.status = 'error'), coalesce(sum(ev.cost_usd), 0),
       count(*) FILTER (WHERE ev.cost_usd IS NULL)
FROM d CROSS JOIN LATERAL (
    SELECT ev.project_id, ev.environment_id, ev.user_id, ev.status, ev.cost_usd FROM ingest_event ev
    WHERE ev.project_id = d.project_id AND ev."timestamp" >= d.day::timestamp AT TIME ZONE 'UTC'
      AND ev."timestamp" < (d.day + 1)::timestamp AT TIME ZONE 'UTC' AND ev.user_id <> ''
    OFFSET 0
) ev
GROUP BY d.day, ev.project_id, ev.environment_id, ev.user_id
"""

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


def hours_rollup(*, hours: list[tuple[int, datetime]]) -> RollupResult:
    """Recompute the given (project_id, hour_start) buckets and their days, in the caller's transaction."""
    if not hours:
        return RollupResult()
    hours = sorted(set(hours))
    days = sorted({(project_id, hour.astimezone(UTC).date()) for project_id, hour in hours})
    with connection.cursor() as cursor:
        locks = [_lock_key(_HOUR_LOCK_CLASS, p, int(h.timestamp()) // 3600) for p, h in hours]
        locks += [_lock_key(_DAY_LOCK_CLASS, p, d.toordinal()) for p, d in days]
        cursor.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, o)",
                       [locks])
        hour_params = {"projects": [p for p, _ in hours], "hours": [h for _, h in hours]}
        cursor.execute(DELETE_HOURS_SQL, hour_params)
        cursor.execute(HOURLY_SQL, hour_params)
        if _after_hours_hook is not None:
            _after_hours_hook(hours)
        day_params = {"projects": [p for p, _ in days], "days": [d for _, d in days]}
        cursor.execute(DELETE_DAYS_SQL, day_params)
        cursor.execute(DAILY_SQL, day_params)
        cursor.execute(DAILY_USERS_SQL, day_params)
    return RollupResult(hours=len(hours), days=len(days))


def dirty_hours_rollup(*, max_batches: int | None = None, max_seconds: float | None = None) -> RollupResult:
    """One pass: claim dirty markers in batches and recompute their hours, until none is left
    (or `max_seconds` have gone by: the periodic task stops there and the next run continues,
    so a backlog never runs into the task's time limit mid-batch).

    Idempotent: keyed by (project_id, hour_start); markers locked by a concurrent pass are
    skipped here (that pass owns them).
    """
    total = RollupResult()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    while (max_batches is None or total.passes < max_batches) and (deadline is None or time.monotonic() < deadline):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(CLAIM_SQL, [CLAIM_BATCH])
            hours = [(project_id, hour) for project_id, hour in cursor.fetchall()]
            if not hours:
                break
            result = hours_rollup(hours=hours)
        total.hours += result.hours
        total.days += result.days
        total.passes += 1
        total.project_ids = sorted(set(total.project_ids) | {p for p, _ in hours})
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


def days_of(hours: list[tuple[int, datetime]]) -> list[tuple[int, date]]:
    return sorted({(p, h.astimezone(UTC).date()) for p, h in hours})


@dataclass
class VerifyResult:
    hours_checked: int = 0
    days_checked: int = 0
    pending_hours: int = 0
    differences: list[str] | None = None


_VERIFY_COLUMNS = [
    "requests", "errors", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_hits", "batch_requests", "cost_usd",
    "cache_savings_usd", "unpriced_requests", "latency_hist_idx", "latency_hist_cnt", "errors_by_type",
    "http_status_counts",
]


def _compare_sql(stored: str, fresh: str, bucket: str, keys: list[str], columns: list[str],
                 float_columns: list[str]) -> str:
    key_list = ", ".join(keys)
    exact = " OR ".join(f"a.{c} IS DISTINCT FROM b.{c}" for c in columns)
    floats = " OR ".join(f"abs(a.{c} - b.{c}) > 1e-6 * greatest(abs(a.{c}), abs(b.{c}), 1)" for c in float_columns)
    mismatch = " OR ".join(x for x in (exact, floats) if x)
    return f"""
        SELECT {', '.join(f'coalesce(a.{k}, b.{k})' for k in keys)},
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
            "WHERE hour_start >= %s AND hour_start < %s", [start, end])
        result.pending_hours = cursor.fetchone()[0]
        cursor.execute("""
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
        """, {"s": start, "e": end})
        cursor.execute("SELECT array_agg(project_id), array_agg(hour_start), count(*) FROM vb_hour_start")
        projects, hours, result.hours_checked = cursor.fetchone()
        cursor.execute("SELECT array_agg(project_id), array_agg(day), count(*) FROM vb_day")
        day_projects, days, result.days_checked = cursor.fetchone()
        renames = {
            "rollups_hourlyaggregate": "verify_hourly", "rollups_dailyaggregate": "verify_daily",
            "rollups_dailyuserspend": "verify_daily_users",
        }

        def fresh(sql: str) -> str:
            for old, new in renames.items():
                sql = sql.replace(old, new)
            return sql

        if projects:
            cursor.execute(fresh(HOURLY_SQL), {"projects": projects, "hours": hours})
        if day_projects:
            cursor.execute(fresh(DAILY_SQL), {"projects": day_projects, "days": days})
            cursor.execute(fresh(DAILY_USERS_SQL), {"projects": day_projects, "days": days})
        dims = ["project_id", "environment_id", "service", "model", "feature"]
        checks = [
            ("hourly", "rollups_hourlyaggregate", "verify_hourly", "hour_start", [*dims, "hour_start"],
             _VERIFY_COLUMNS, ["latency_sum_ms"]),
            ("daily", "rollups_dailyaggregate", "verify_daily", "day", [*dims, "day"], _VERIFY_COLUMNS,
             ["latency_sum_ms"]),
            ("daily users", "rollups_dailyuserspend", "verify_daily_users", "day",
             ["project_id", "environment_id", "user_id", "day"],
             ["requests", "errors", "cost_usd", "unpriced_requests"], []),
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
        for table, column, bound in (("rollups_hourlyaggregate", "hour_start", cutoff),
                                     ("rollups_dailyaggregate", "day", cutoff.date()),
                                     ("rollups_dailyuserspend", "day", cutoff.date())):
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
        cursor.execute("DELETE FROM rollups_dailyuserspend WHERE project_id = %s AND user_id = %s",
                       [project_id, user_id])
        rows = cursor.rowcount
    rollup_until_current()
    return ForgetUserResult(events_deleted=forgotten.events_deleted, hours_rerolled=forgotten.hours_marked,
                            user_rows_deleted=rows)


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
    return RetentionSummary(partitions_dropped=raw.partitions_dropped, events_deleted=raw.events_deleted,
                            aggregate_rows_deleted=rows)
