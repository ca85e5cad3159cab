"""Reads of the aggregates (never of raw events): the query API and every chart use these.

Sums add across aggregate rows; latency percentiles come from merging the rows' log
histograms (rollups/sketch.py), so they are within 1% for any filter and range.
A range that is whole UTC days at day granularity reads the daily table; anything
else reads the hourly table (bucketed by day if asked), so partial days stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils import timezone

from rollups import sketch
from rollups.services import SLICE_ENV, SLICE_MODEL, SLICE_SERVICE

GROUPS = ("model", "service", "environment", "feature")
FILTERS = GROUPS
GRANULARITIES = ("hour", "day")
# Internal granularity for breakdown tables: one row per group over the whole range (no
# buckets), so a grouped call costs groups x histogram buckets rows, not days x that.
TOTAL = "total"
_GROUP_SQL = {"model": "a.model", "service": "a.service", "environment": "env.name", "feature": "a.feature"}

SUM_FIELDS = (
    "requests", "errors", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_hits", "batch_requests", "unpriced_requests",
)
DECIMAL_FIELDS = ("cost_usd", "cache_savings_usd")


@dataclass
class MetricsQuery:
    project_ids: list[int]
    start: datetime  # inclusive
    end: datetime  # exclusive
    granularity: str = "day"
    group_by: list[str] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)

    @property
    def uses_daily_table(self) -> bool:
        def midnight(t: datetime) -> bool:
            t = t.astimezone(UTC)
            return t.time() == time(0) and t.microsecond == 0

        return self.granularity in ("day", TOTAL) and midnight(self.start) and midnight(self.end)


@dataclass
class MetricsRow:
    bucket: datetime | None
    group: dict[str, str]
    sums: dict[str, int] = field(default_factory=dict)
    cost_usd: Decimal = Decimal(0)
    cache_savings_usd: Decimal = Decimal(0)
    latency_sum_ms: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.sums.get("requests", 0)

    def add(self, other: MetricsRow) -> None:
        for name in SUM_FIELDS:
            self.sums[name] = self.sums.get(name, 0) + other.sums.get(name, 0)
        self.cost_usd += other.cost_usd
        self.cache_savings_usd += other.cache_savings_usd
        self.latency_sum_ms += other.latency_sum_ms
        for index, count in other.histogram.items():
            self.histogram[index] = self.histogram.get(index, 0) + count

    def percentiles(self) -> tuple[float, float, float]:
        values = sketch.quantiles(self.histogram, (0.5, 0.95, 0.99))
        p50, p95, p99 = (v or 0.0 for v in values)
        return p50, p95, p99

    def as_dict(self) -> dict[str, Any]:
        requests = self.requests
        p50, p95, p99 = self.percentiles()
        out: dict[str, Any] = {}
        if self.bucket is not None:
            out["bucket"] = self.bucket.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.bucket is not None or self.group:
            out["group"] = self.group
        out.update(
            requests=requests,
            errors=self.sums.get("errors", 0),
            error_rate=self.sums.get("errors", 0) / requests if requests else 0.0,
            input_tokens=self.sums.get("input_tokens", 0),
            output_tokens=self.sums.get("output_tokens", 0),
            cache_read_input_tokens=self.sums.get("cache_read_input_tokens", 0),
            cache_creation_input_tokens=self.sums.get("cache_creation_input_tokens", 0),
            cache_write_5m_tokens=self.sums.get("cache_write_5m_tokens", 0),
            cache_write_1h_tokens=self.sums.get("cache_write_1h_tokens", 0),
            cache_hits=self.sums.get("cache_hits", 0),
            cache_hit_rate=self.sums.get("cache_hits", 0) / requests if requests else 0.0,
            batch_requests=self.sums.get("batch_requests", 0),
            cost_usd=float(self.cost_usd),
            cache_savings_usd=float(self.cache_savings_usd),
            unpriced_requests=self.sums.get("unpriced_requests", 0),
            latency_avg_ms=self.latency_sum_ms / requests if requests else 0.0,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            latency_p99_ms=p99,
        )
        return out


@dataclass
class MetricsResult:
    granularity: str
    series: list[MetricsRow]
    totals: MetricsRow
    as_of: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "granularity": self.granularity,
            "series": [row.as_dict() for row in self.series],
            "totals": self.totals.as_dict(),
            "as_of": self.as_of.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if self.as_of else None,
        }


def _where(query: MetricsQuery) -> tuple[str, list[Any]]:
    if query.uses_daily_table:
        clauses = ["a.project_id = ANY(%s)", "a.day >= %s", "a.day < %s"]
        params: list[Any] = [query.project_ids, query.start.astimezone(UTC).date(), query.end.astimezone(UTC).date()]
    else:
        clauses = ["a.project_id = ANY(%s)", "a.hour_start >= %s", "a.hour_start < %s"]
        params = [query.project_ids, query.start, query.end]
    for name, values in query.filters.items():
        if values:
            clauses.append(f"{_GROUP_SQL[name]} = ANY(%s)")
            params.append(list(values))
    return " AND ".join(clauses), params


def _bucket_sql(query: MetricsQuery) -> str:
    if query.granularity == TOTAL:
        return "NULL::timestamptz"
    if query.uses_daily_table:
        return "(a.day::timestamp AT TIME ZONE 'UTC')"
    if query.granularity == "day":
        return "(date_trunc('day', a.hour_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
    return "a.hour_start"


_SLICE_BITS = {"environment": SLICE_ENV, "service": SLICE_SERVICE, "model": SLICE_MODEL}


def aggregate_table(query: MetricsQuery) -> tuple[str, str, list[Any]]:
    """(FROM clause, extra WHERE, its params): the smallest aggregate table that answers the query.

    Whole days with no feature filter or grouping read the daily slice with exactly the
    dimensions used (one row a day when there are none), other whole days the daily rows,
    anything else the hourly rows.
    """
    if not query.uses_daily_table:
        return "rollups_hourlyaggregate a JOIN projects_environment env ON env.id = a.environment_id", "", []
    used = {name for name, values in query.filters.items() if values} | set(query.group_by)
    if "feature" in used:
        return "rollups_dailyaggregate a JOIN projects_environment env ON env.id = a.environment_id", "", []
    dims = sum(_SLICE_BITS[name] for name in used)
    return ("rollups_dailyslice a LEFT JOIN projects_environment env ON env.id = a.environment_id",
            " AND a.dims = %s", [dims])


def _pieces(query: MetricsQuery) -> list[MetricsQuery]:
    """A day-granularity (or total) range that is not whole days, split into its ragged edges
    (hourly rows) and the whole days between them (daily rows), so e.g. "the 29.4 days before
    this period" reads 29 days of daily rows and 10 hours of hourly ones, not 705 hours."""
    if query.granularity not in ("day", TOTAL) or query.uses_daily_table:
        return [query]
    start, end = query.start.astimezone(UTC), query.end.astimezone(UTC)
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(days=1)
    last = end.replace(hour=0, minute=0, second=0, microsecond=0)
    if first >= last:
        return [query]
    bounds = [(a, b) for a, b in ((start, first), (first, last), (last, end)) if a < b]
    return [replace(query, start=a, end=b) for a, b in bounds]


def _fetch(cursor, query: MetricsQuery, groups: list[str], rows: dict[tuple[Any, ...], MetricsRow]) -> None:  # type: ignore[no-untyped-def]
    """Add the query's rows (per bucket and group) into `rows`, merging rows of the same key."""
    table, dims_where, dims_params = aggregate_table(query)
    where, params = _where(query)
    where += dims_where
    params += dims_params
    group_cols = "".join(f", {_GROUP_SQL[g]} AS g_{g}" for g in groups)
    group_by = "".join(f", g_{g}" for g in groups)
    bucket = _bucket_sql(query)
    sums = ", ".join(f"sum(a.{name})::bigint" for name in SUM_FIELDS)
    sums_sql = f"""
        SELECT {bucket} AS bucket{group_cols}, {sums}, sum(a.cost_usd), sum(a.cache_savings_usd),
               sum(a.latency_sum_ms)
        FROM {table}
        WHERE {where} GROUP BY bucket{group_by} ORDER BY bucket{group_by}
    """  # noqa: S608 - identifiers come from the fixed maps above
    # One row per (bucket, group) with the merged histogram as two arrays: a row per histogram
    # bucket would cost a timestamp parse each on the way back.
    hist_sql = f"""
        SELECT bucket{group_by}, array_agg(i), array_agg(n) FROM (
            SELECT {bucket} AS bucket{group_cols}, u.i, sum(u.n)::bigint AS n
            FROM {table}, unnest(a.latency_hist_idx, a.latency_hist_cnt) AS u(i, n)
            WHERE {where} GROUP BY bucket{group_by}, u.i
        ) h GROUP BY bucket{group_by}
    """  # noqa: S608
    fetched: dict[tuple[Any, ...], MetricsRow] = {}
    cursor.execute(sums_sql, params)
    for record in cursor.fetchall():
        key = tuple(record[: 1 + len(groups)])
        values = record[1 + len(groups):]
        row = MetricsRow(bucket=key[0], group=dict(zip(groups, key[1:], strict=True)))
        row.sums = dict(zip(SUM_FIELDS, (int(v) for v in values[: len(SUM_FIELDS)]), strict=True))
        row.cost_usd, row.cache_savings_usd, row.latency_sum_ms = values[len(SUM_FIELDS):]
        fetched[key] = row
    cursor.execute(hist_sql, params)
    for record in cursor.fetchall():
        key = tuple(record[: 1 + len(groups)])
        fetched[key].histogram = dict(zip(record[-2], record[-1], strict=True))
    for key, row in fetched.items():
        if key in rows:
            rows[key].add(row)
        else:
            rows[key] = row


def metrics_query(query: MetricsQuery, *, with_as_of: bool = True) -> MetricsResult:
    """Series per bucket (and group) plus totals, from the aggregates only (and "data as of",
    unless the caller already has it: `with_as_of=False` leaves `as_of` None)."""
    groups = [g for g in GROUPS if g in query.group_by]
    rows: dict[tuple[Any, ...], MetricsRow] = {}
    pieces = _pieces(query)
    with connection.cursor() as cursor:
        for piece in pieces:
            _fetch(cursor, piece, groups, rows)
        as_of = _as_of(cursor, query.project_ids) if with_as_of else None
    series = list(rows.values())
    if len(pieces) > 1:
        series.sort(key=lambda r: (r.bucket.timestamp() if r.bucket else 0.0, [r.group[g] for g in groups]))
    if not groups and query.granularity != TOTAL:
        series = _zero_filled(series, query)
    totals = MetricsRow(bucket=None, group={})
    for row in series:
        totals.add(row)
    return MetricsResult(granularity=query.granularity, series=series, totals=totals, as_of=as_of)


def _zero_filled(series: list[MetricsRow], query: MetricsQuery) -> list[MetricsRow]:
    """Every bucket of the range, with zeros where nothing happened (charts need the gaps)."""
    step = timedelta(hours=1) if query.granularity == "hour" else timedelta(days=1)
    start = query.start.astimezone(UTC)
    start = start.replace(minute=0, second=0, microsecond=0)
    if query.granularity == "day":
        start = start.replace(hour=0)
    by_bucket = {row.bucket: row for row in series}
    filled = []
    bucket = start
    while bucket < query.end:
        filled.append(by_bucket.get(bucket) or MetricsRow(bucket=bucket, group={}))
        bucket += step
    return filled


def _as_of(cursor, project_ids: list[int]) -> datetime:  # type: ignore[no-untyped-def]
    """Every event committed before this instant is in the aggregates."""
    cursor.execute("SELECT min(created_at) FROM ingest_dirtyhour WHERE project_id = ANY(%s)", [project_ids])
    pending = cursor.fetchone()[0]
    return pending if pending is not None else timezone.now()
