"""Reads of the aggregates (never of raw events): the query API and every chart use these.

Sums add across aggregate rows; latency and time-to-first-token percentiles come from
merging the rows' log histograms (rollups/sketch.py), so they are within 1% for any filter
and range. Latency covers online calls only (Message Batches results are counted in
requests, tokens and cost, and their turnaround is averaged apart).
A range that is whole UTC days at day granularity reads the daily table; anything
else reads the hourly table (bucketed by day if asked), so partial days stay exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Exists, OuterRef, QuerySet, Sum
from django.utils import timezone

from pricing.services import TOKEN_FIELDS
from rollups import sketch
from rollups.models import DailyAggregate, DailyUserSpend
from rollups.services import HEADROOM_MINS, SLICE_ENV, SLICE_MODEL, SLICE_SERVICE, SUM_FIELDS

if TYPE_CHECKING:
    from projects.models import Project

GROUPS = ("model", "service", "environment", "feature", "user_id")
FILTERS = GROUPS
# End users are many, so per-user numbers are kept apart, per UTC day and environment
# (rollups_dailyuserspend): a query that filters or groups by user_id can use only these
# dimensions, whole days, and gets only PER_USER_KNOWN; the other fields are None.
PER_USER_DIMENSIONS = ("environment", "user_id")
PER_USER_KNOWN = ("requests", "errors", "error_rate", "cost_usd", "unpriced_requests")
GRANULARITIES = ("hour", "day")
# Internal granularity for breakdown tables: one row per group over the whole range (no
# buckets), so a grouped call costs groups x histogram buckets rows, not days x that.
TOTAL = "total"
_GROUP_SQL = {
    "model": "a.model",
    "service": "a.service",
    "environment": "env.name",
    "feature": "a.feature",
    "user_id": "a.user_id",
}


# Every row's fields (CONTRACT §4), in the order of MetricsRow.as_dict and of the CSV columns.
METRIC_FIELDS = (
    "requests",
    "errors",
    "error_rate",
    *TOKEN_FIELDS,
    "cache_hits",
    "cache_hit_rate",
    "batch_requests",
    "cost_usd",
    "cache_savings_usd",
    "unpriced_requests",
    "latency_avg_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "batch_latency_avg_ms",
    "rate_limited_requests",
    *HEADROOM_MINS,
)
PER_USER_UNKNOWN = tuple(name for name in METRIC_FIELDS if name not in PER_USER_KNOWN)


@dataclass
class MetricsQuery:
    project_ids: list[int]
    start: datetime  # inclusive
    end: datetime  # exclusive
    granularity: str = "day"
    group_by: list[str] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)
    # False: sums only, no latency/TTFT histograms (their percentiles are then None). Merging
    # histograms is most of a grouped query's time; a page that shows no percentile skips it.
    histograms: bool = True
    ttft: bool = True  # False: the latency histogram only (a breakdown's P95, no time to first token)

    @property
    def uses_daily_table(self) -> bool:
        def midnight(t: datetime) -> bool:
            t = t.astimezone(UTC)
            return t.time() == time(0) and t.microsecond == 0

        return self.granularity in ("day", TOTAL) and midnight(self.start) and midnight(self.end)

    @property
    def per_user(self) -> bool:
        return "user_id" in self.group_by or bool(self.filters.get("user_id"))


@dataclass
class MetricsRow:
    bucket: datetime | None
    group: dict[str, str]
    sums: dict[str, int] = field(default_factory=dict)
    cost_usd: Decimal = Decimal(0)
    cache_savings_usd: Decimal = Decimal(0)
    latency_sum_ms: float = 0.0  # online calls
    batch_latency_sum_ms: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)  # online latency
    ttft_histogram: dict[int, int] = field(default_factory=dict)
    # The lowest remaining/limit per HEADROOM_MINS name; a name is absent when no call reported it.
    headroom: dict[str, float] = field(default_factory=dict)
    # Read from per-user spend (rollups_dailyuserspend): only requests, errors and spend are known.
    per_user: bool = False

    @property
    def requests(self) -> int:
        return self.sums.get("requests", 0)

    @property
    def online_requests(self) -> int:
        """The calls latency is measured on: every call but Message Batches results."""
        return self.requests - self.sums.get("batch_requests", 0)

    @property
    def ttft_requests(self) -> int:
        return sum(self.ttft_histogram.values())

    def add(self, other: MetricsRow) -> None:
        for name in SUM_FIELDS:
            self.sums[name] = self.sums.get(name, 0) + other.sums.get(name, 0)
        self.cost_usd += other.cost_usd
        self.cache_savings_usd += other.cache_savings_usd
        self.latency_sum_ms += other.latency_sum_ms
        self.batch_latency_sum_ms += other.batch_latency_sum_ms
        for index, count in other.histogram.items():
            self.histogram[index] = self.histogram.get(index, 0) + count
        for index, count in other.ttft_histogram.items():
            self.ttft_histogram[index] = self.ttft_histogram.get(index, 0) + count
        for name, low in other.headroom.items():
            self.headroom[name] = min(low, self.headroom.get(name, low))
        self.per_user = self.per_user or other.per_user

    def percentiles(self) -> tuple[float, float, float]:
        values = sketch.quantiles(self.histogram, (0.5, 0.95, 0.99))
        p50, p95, p99 = (v or 0.0 for v in values)
        return p50, p95, p99

    def as_dict(self) -> dict[str, Any]:
        requests = self.requests
        online = self.online_requests
        batch = self.sums.get("batch_requests", 0)
        p50, p95, p99 = self.percentiles()
        ttft_p50, ttft_p95 = sketch.quantiles(self.ttft_histogram, (0.5, 0.95))
        out: dict[str, Any] = {}
        if self.bucket is not None:
            out["bucket"] = self.bucket.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.bucket is not None or self.group:
            out["group"] = self.group
        out.update(
            requests=requests,
            errors=self.sums.get("errors", 0),
            error_rate=self.sums.get("errors", 0) / requests if requests else 0.0,
            **{name: self.sums.get(name, 0) for name in TOKEN_FIELDS},
            cache_hits=self.sums.get("cache_hits", 0),
            cache_hit_rate=self.sums.get("cache_hits", 0) / requests if requests else 0.0,
            batch_requests=self.sums.get("batch_requests", 0),
            cost_usd=float(self.cost_usd),
            cache_savings_usd=float(self.cache_savings_usd),
            unpriced_requests=self.sums.get("unpriced_requests", 0),
            latency_avg_ms=self.latency_sum_ms / online if online else 0.0,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            latency_p99_ms=p99,
            ttft_p50_ms=ttft_p50,
            ttft_p95_ms=ttft_p95,
            batch_latency_avg_ms=self.batch_latency_sum_ms / batch if batch else None,
            rate_limited_requests=self.sums.get("rate_limited_requests", 0),
        )
        out.update((name, self.headroom.get(name)) for name in HEADROOM_MINS)
        if self.per_user:
            out.update(dict.fromkeys(PER_USER_UNKNOWN))
        return out


def _csv_value(value: Any) -> str:
    if value is None:
        return ""  # not measured (no call reported it, or not kept per user)
    return repr(value) if isinstance(value, float) else str(value)


@dataclass
class MetricsResult:
    granularity: str
    series: list[MetricsRow]
    totals: MetricsRow
    as_of: datetime | None
    groups: list[str] = field(default_factory=list)

    def csv_rows(self) -> Iterator[list[str]]:
        """The series as CSV rows, a header first: bucket, the group columns, then METRIC_FIELDS."""
        yield ["bucket", *self.groups, *METRIC_FIELDS]
        for row in self.series:
            d = row.as_dict()
            yield [
                d.get("bucket", ""),
                *(row.group.get(g, "") for g in self.groups),
                *(_csv_value(d[name]) for name in METRIC_FIELDS),
            ]

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
    return (
        "rollups_dailyslice a LEFT JOIN projects_environment env ON env.id = a.environment_id",
        " AND a.dims = %s",
        [dims],
    )


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


def _fetch(
    cursor: CursorWrapper, query: MetricsQuery, groups: list[str], rows: dict[tuple[Any, ...], MetricsRow]
) -> None:
    """Add the query's rows (per bucket and group) into `rows`, merging rows of the same key."""
    table, dims_where, dims_params = aggregate_table(query)
    where, params = _where(query)
    where += dims_where
    params += dims_params
    group_cols = "".join(f", {_GROUP_SQL[g]} AS g_{g}" for g in groups)
    group_by = "".join(f", g_{g}" for g in groups)
    bucket = _bucket_sql(query)
    sums = ", ".join(f"sum(a.{name})::bigint" for name in SUM_FIELDS)
    mins = ", ".join(f"min(a.{name})" for name in HEADROOM_MINS)
    sums_sql = f"""
        SELECT {bucket} AS bucket{group_cols}, {sums}, sum(a.cost_usd), sum(a.cache_savings_usd),
               sum(a.latency_sum_ms), sum(a.batch_latency_sum_ms), {mins}
        FROM {table}
        WHERE {where} GROUP BY bucket{group_by} ORDER BY bucket{group_by}
    """  # noqa: S608 - identifiers come from the fixed maps above
    # One row per (bucket, group, histogram) with the merged histogram as two arrays: a row per
    # histogram bucket would cost a timestamp parse each on the way back. Latency (kind 0) and
    # time to first token (kind 1) in one statement, one round trip.
    hist_sql = " UNION ALL ".join(
        f"""
        SELECT bucket{group_by}, {kind} AS kind, array_agg(i), array_agg(n) FROM (
            SELECT {bucket} AS bucket{group_cols}, u.i, sum(u.n)::bigint AS n
            FROM {table}, unnest(a.{column}_idx, a.{column}_cnt) AS u(i, n)
            WHERE {where} GROUP BY bucket{group_by}, u.i
        ) h GROUP BY bucket{group_by}"""
        for kind, column in ((0, "latency_hist"), (1, "ttft_hist"))
        if kind == 0 or query.ttft
    )  # noqa: S608
    fetched: dict[tuple[Any, ...], MetricsRow] = {}
    cursor.execute(sums_sql, params)
    for record in cursor.fetchall():
        key = tuple(record[: 1 + len(groups)])
        values = record[1 + len(groups) :]
        row = MetricsRow(bucket=key[0], group=dict(zip(groups, key[1:], strict=True)))
        row.sums = dict(zip(SUM_FIELDS, (int(v) for v in values[: len(SUM_FIELDS)]), strict=True))
        rest = values[len(SUM_FIELDS) :]
        row.cost_usd, row.cache_savings_usd, row.latency_sum_ms, row.batch_latency_sum_ms = rest[:4]
        row.headroom = {name: low for name, low in zip(HEADROOM_MINS, rest[4:], strict=True) if low is not None}
        fetched[key] = row
    if query.histograms:
        cursor.execute(hist_sql, params * (2 if query.ttft else 1))
    for record in cursor.fetchall() if query.histograms else []:
        key = tuple(record[: 1 + len(groups)])
        histogram = dict(zip(record[-2], record[-1], strict=True))
        if record[-3] == 0:
            fetched[key].histogram = histogram
        else:
            fetched[key].ttft_histogram = histogram
    for key, row in fetched.items():
        if key in rows:
            rows[key].add(row)
        else:
            rows[key] = row


def _user_days(query: MetricsQuery) -> tuple[date, date]:
    """The UTC days [first, last) a per-user query reads: every day the range touches."""
    first = query.start.astimezone(UTC).date()
    end = query.end.astimezone(UTC)
    last = end.date() if end.time() == time(0) and end.microsecond == 0 else end.date() + timedelta(days=1)
    return first, last


def per_user_problem(query: MetricsQuery) -> tuple[str, str] | None:
    """Why per-user spend (one row per user, environment and UTC day) cannot answer `query`, as
    (parameter, message); None when it can, or when the query is not per user."""
    if not query.per_user:
        return None
    if query.granularity == "hour":
        return "granularity", "user_id is kept per UTC day: use granularity=day"
    used = {*query.group_by, *(name for name, values in query.filters.items() if values)}
    others = sorted(used - set(PER_USER_DIMENSIONS))
    if others:
        return (
            "user_id" if query.filters.get("user_id") else "group_by",
            f"user_id can be combined only with environment (per-user numbers are not kept per {', '.join(others)})",
        )
    if not query.uses_daily_table and query.granularity != TOTAL:
        whole_start = query.start.astimezone(UTC).time() == time(0)
        return (
            "to" if whole_start else "from",
            "user_id is kept per UTC day: give whole days (YYYY-MM-DD, or times at 00:00Z)",
        )
    return None


def _fetch_users(
    cursor: CursorWrapper, query: MetricsQuery, groups: list[str], rows: dict[tuple[Any, ...], MetricsRow]
) -> None:
    """Per-user spend rows (one per user, environment and UTC day) summed per bucket and group.
    A TOTAL query reads every UTC day its range touches (top users of "the last 24 hours")."""
    problem = per_user_problem(query)
    if problem:
        raise ValueError(problem[1])
    first, last = _user_days(query)
    where = ["a.project_id = ANY(%s)", "a.day >= %s", "a.day < %s"]
    params: list[Any] = [query.project_ids, first, last]
    for name, values in query.filters.items():
        if values:
            where.append(f"{_GROUP_SQL[name]} = ANY(%s)")
            params.append(list(values))
    bucket = "NULL::timestamptz" if query.granularity == TOTAL else "(a.day::timestamp AT TIME ZONE 'UTC')"
    group_cols = "".join(f", {_GROUP_SQL[g]} AS g_{g}" for g in groups)
    group_by = "".join(f", g_{g}" for g in groups)
    cursor.execute(
        f"""
        SELECT {bucket} AS bucket{group_cols}, sum(a.requests)::bigint, sum(a.errors)::bigint,
               sum(a.unpriced_requests)::bigint, sum(a.cost_usd)
        FROM rollups_dailyuserspend a JOIN projects_environment env ON env.id = a.environment_id
        WHERE {" AND ".join(where)} GROUP BY bucket{group_by} ORDER BY bucket{group_by}
    """,
        params,
    )  # noqa: S608 - identifiers come from the fixed maps above
    for record in cursor.fetchall():
        key = tuple(record[: 1 + len(groups)])
        requests, errors, unpriced, cost = record[1 + len(groups) :]
        rows[key] = MetricsRow(
            bucket=key[0],
            group=dict(zip(groups, key[1:], strict=True)),
            per_user=True,
            sums={"requests": int(requests), "errors": int(errors), "unpriced_requests": int(unpriced)},
            cost_usd=cost,
        )


def metrics_query(query: MetricsQuery, *, with_as_of: bool = True) -> MetricsResult:
    """Series per bucket (and group) plus totals, from the aggregates only (and "data as of",
    unless the caller already has it: `with_as_of=False` leaves `as_of` None).

    A query that filters or groups by user_id reads per-user spend (see PER_USER_DIMENSIONS and
    `per_user_problem`, whose message a ValueError carries when it cannot)."""
    groups = [g for g in GROUPS if g in query.group_by]
    rows: dict[tuple[Any, ...], MetricsRow] = {}
    pieces = [query] if query.per_user else _pieces(query)
    with connection.cursor() as cursor:
        if query.per_user:
            _fetch_users(cursor, query, groups, rows)
        else:
            for piece in pieces:
                _fetch(cursor, piece, groups, rows)
        as_of = _as_of(cursor, query.project_ids) if with_as_of else None
    series = list(rows.values())
    if len(pieces) > 1:
        series.sort(key=lambda r: (r.bucket.timestamp() if r.bucket else 0.0, [r.group[g] for g in groups]))
    if not groups and query.granularity != TOTAL:
        series = _zero_filled(series, query)
    totals = MetricsRow(bucket=None, group={}, per_user=query.per_user)
    for row in series:
        totals.add(row)
    return MetricsResult(granularity=query.granularity, series=series, totals=totals, as_of=as_of, groups=groups)


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
        filled.append(by_bucket.get(bucket) or MetricsRow(bucket=bucket, group={}, per_user=query.per_user))
        bucket += step
    return filled


def _as_of(cursor: CursorWrapper, project_ids: list[int]) -> datetime:
    """Every event committed before this instant is in the aggregates."""
    cursor.execute("SELECT min(created_at) FROM ingest_dirtyhour WHERE project_id = ANY(%s)", [project_ids])
    pending = cursor.fetchone()[0]
    return pending if pending is not None else timezone.now()


# One statement, so one snapshot: an hour is either still marked dirty (its events not yet in
# the aggregates) or its rows are committed, never neither (a rollup deletes the marker in the
# transaction that writes the rows).
_HOURS_WITH_CALLS_SQL = """
SELECT hour_start FROM (
    SELECT hour_start FROM ingest_dirtyhour
    WHERE project_id = %(project)s AND hour_start >= %(first)s AND hour_start < %(end)s
    UNION
    SELECT a.hour_start FROM rollups_hourlyaggregate a
    WHERE a.project_id = %(project)s AND a.hour_start >= %(first)s AND a.hour_start < %(end)s {where}
    GROUP BY a.hour_start
) h ORDER BY hour_start LIMIT %(limit)s
"""


def hours_with_calls(
    *, project_id: int, start: datetime, end: datetime, filters: dict[str, str | int], limit: int
) -> list[datetime] | None:
    """The UTC hours of [start, end) that can hold calls matching `filters` (environment_id,
    service, model, feature: equality), from the hourly aggregates plus the hours not yet rolled
    up; None when more than `limit` hours do. Lets a search for a rare value (a feature used a
    handful of times in a month) read those hours' raw events only, not the whole range."""
    allowed = ("environment_id", "service", "model", "feature")
    where = "".join(f" AND a.{name} = %({name})s" for name in allowed if name in filters)
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(
            _HOURS_WITH_CALLS_SQL.format(where=where),  # noqa: S608 - names from `allowed`
            {
                "project": project_id,
                "first": first,
                "end": end,
                "limit": limit + 1,
                **{k: v for k, v in filters.items() if k in allowed},
            },
        )
        hours = [row[0] for row in cursor.fetchall()]
    return None if len(hours) > limit else hours


# --- the dashboard's other reads: which projects have data, filter choices, per-user spend, error maps ---


def first_project_with_aggregates(*, projects: QuerySet[Project]) -> Project | None:
    """The first of `projects`, by slug, that has any daily aggregate."""
    return projects.filter(Exists(DailyAggregate.objects.filter(project=OuterRef("pk")))).order_by("slug").first()


def project_has_aggregates(*, project_id: int) -> bool:
    return DailyAggregate.objects.filter(project_id=project_id).exists()


def dimension_values(*, project_id: int, first_day: date, last_day: date) -> list[tuple[str, str, str, str]]:
    """The distinct (environment, service, model, feature) of the project's daily rows over
    [first_day, last_day] (a few rows per day)."""
    return list(
        DailyAggregate.objects.filter(project_id=project_id, day__gte=first_day, day__lte=last_day)
        .values_list("environment__name", "service", "model", "feature")
        .distinct()
    )


def features_seen(*, project_id: int, first_day: date, last_day: date) -> set[str]:
    """The non-empty features of the project's daily rows over [first_day, last_day]."""
    return set(
        DailyAggregate.objects.filter(project_id=project_id, day__gte=first_day, day__lte=last_day)
        .exclude(feature="")
        .values_list("feature", flat=True)
        .distinct()
    )


def user_spend_by_day(
    *, project_id: int, user_id: str, first_day: date, last_day: date, environment: str | None
) -> dict[date, Mapping[str, Any]]:
    """One end user's requests, errors, cost and unpriced requests per UTC day over
    [first_day, last_day] (days without calls are absent), in one environment if named."""
    qs = DailyUserSpend.objects.filter(project_id=project_id, user_id=user_id, day__gte=first_day, day__lte=last_day)
    if environment:
        qs = qs.filter(environment__name=environment)
    return {
        r["day"]: r
        for r in qs.values("day").annotate(
            requests=Sum("requests"), errors=Sum("errors"), cost=Sum("cost_usd"), unpriced=Sum("unpriced_requests")
        )
    }


@dataclass
class UserSpend:
    user_id: str
    requests: int
    errors: int
    cost_usd: float
    unpriced_requests: int


def user_spend_top(
    *, project_id: int, first_day: date, last_day: date, environment: str | None, user_id: str | None, limit: int
) -> list[UserSpend]:
    """The end users with the most spend over [first_day, last_day], in one environment and of
    one user if named."""
    qs = DailyUserSpend.objects.filter(project_id=project_id, day__gte=first_day, day__lte=last_day)
    if environment:
        qs = qs.filter(environment__name=environment)
    if user_id:
        qs = qs.filter(user_id=user_id)
    rows = (
        qs.values("user_id")
        .annotate(
            requests=Sum("requests"), errors=Sum("errors"), cost=Sum("cost_usd"), unpriced=Sum("unpriced_requests")
        )
        .order_by("-cost", "-requests", "user_id")[:limit]
    )
    return [
        UserSpend(
            user_id=r["user_id"],
            requests=r["requests"],
            errors=r["errors"],
            cost_usd=float(r["cost"]),
            unpriced_requests=r["unpriced"],
        )
        for r in rows
    ]


def _dimension_sql(query: MetricsQuery) -> tuple[str, str, str, list[Any]]:
    """(FROM clause, bucket expression, WHERE, params) with metrics_query's table and bucket rules."""
    table, dims_where, dims_params = aggregate_table(query)
    if query.uses_daily_table:
        bucket = "(a.day::timestamp AT TIME ZONE 'UTC')"
        where = ["a.project_id = ANY(%s)", "a.day >= %s", "a.day < %s"]
        params: list[Any] = [query.project_ids, query.start.astimezone(UTC).date(), query.end.astimezone(UTC).date()]
    else:
        bucket = (
            "a.hour_start"
            if query.granularity == "hour"
            else "(date_trunc('day', a.hour_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
        )
        where = ["a.project_id = ANY(%s)", "a.hour_start >= %s", "a.hour_start < %s"]
        params = [query.project_ids, query.start, query.end]
    columns = {"environment": "env.name", "service": "a.service", "model": "a.model", "feature": "a.feature"}
    for name, values in query.filters.items():
        where.append(f"{columns[name]} = ANY(%s)")
        params.append(list(values))
    return table, bucket, " AND ".join(where) + dims_where, params + dims_params


def error_maps(query: MetricsQuery, buckets: list[datetime]) -> dict[str, dict[str, list[int]]]:
    """Errors per type and per HTTP status, per bucket, summed from the aggregates' jsonb maps."""
    table, bucket, where, params = _dimension_sql(query)
    parts = [
        f"""SELECT {bucket} AS bucket, '{kind}' AS kind, j.key, sum(j.value::bigint)
            FROM {table}, jsonb_each_text(a.{column}) AS j
            WHERE {where} GROUP BY 1, 3"""
        for kind, column in (("type", "errors_by_type"), ("status", "http_status_counts"))
    ]
    index = {b.timestamp(): i for i, b in enumerate(buckets)}
    out: dict[str, dict[str, list[int]]] = {"type": {}, "status": {}}
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params * 2)
        for when, kind, key, count in cursor.fetchall():
            i = index.get(when.timestamp())
            if i is not None:
                out[kind].setdefault(key, [0] * len(buckets))[i] += int(count)
    return {kind: dict(sorted(maps.items(), key=lambda kv: (-sum(kv[1]), kv[0]))) for kind, maps in out.items()}


# What a per-user alert rule can judge from per-user spend rows (alerts.selectors), as SQL over one
# row (`row`) and over a user's rows of a day summed across environments (`summed`); `additive`
# sums can be pre-filtered (see users_breaching).
USER_RULE_METRICS: dict[str, dict[str, Any]] = {
    "cost_usd": {"row": "a.cost_usd", "summed": "sum(a.cost_usd)", "additive": True},
    "requests": {"row": "a.requests", "summed": "sum(a.requests)", "additive": True},
    "error_rate": {
        "row": "a.errors::float8 / nullif(a.requests, 0)",
        "summed": "sum(a.errors)::float8 / nullif(sum(a.requests), 0)",
        "additive": False,
    },
}
USER_RULE_WORK_MEM = "64MB"


@dataclass
class UserDayValue:
    user_id: str
    day: date
    value: float
    requests: int


def users_breaching(
    *,
    project_id: int,
    days: list[date],
    metric: str,
    above: bool,
    threshold: float,
    environment: str | None = None,
    min_requests: int = 0,
) -> list[UserDayValue]:
    """The (user, UTC day) pairs among `days` whose metric is above (or below) `threshold`, worst
    first, from per-user spend rows (one per user, environment and day) in one query whose WHERE
    or HAVING does the judging, so a day of 100k users returns only the few that breach, never
    100k rows to Python. `min_requests`: user-days with fewer requests are not judged. Users with
    no calls on a day have no row and are not judged (a `below` rule sees only active users).

    With one environment (the rule names one, or the project has only one) a user's day is one
    row: a filtered scan, no grouping. Otherwise a user's rows are summed across environments in
    a hash aggregate (a group per user and day: bench/alerts_per_user.py measures both). A sum
    above T over k environments needs a row above T/k, so for spend and requests above a
    threshold only the users with such a row are grouped: exact, and most users drop out early.
    """
    spec = USER_RULE_METRICS[metric]
    op = ">" if above else "<"
    order = "DESC" if above else "ASC"
    env_params: list[Any] = []
    pre_params: list[Any] = []
    with transaction.atomic(), connection.cursor() as cursor:
        if environment:
            env_where, single = (
                "AND a.environment_id IN (SELECT id FROM projects_environment WHERE project_id = %s AND name = %s)",
                True,
            )
            env_params = [project_id, environment]
        else:
            cursor.execute("SELECT count(*) FROM projects_environment WHERE project_id = %s", [project_id])
            environments = cursor.fetchone()[0]
            env_where, single = "", environments <= 1
        if single:
            cursor.execute(
                f"""
                SELECT a.user_id, a.day, ({spec["row"]})::float8 AS value, a.requests
                FROM rollups_dailyuserspend a
                WHERE a.project_id = %s AND a.day = ANY(%s::date[]) {env_where}
                  AND a.requests >= %s AND ({spec["row"]}) {op} %s
                ORDER BY value {order}, a.user_id, a.day
            """,
                [project_id, days, *env_params, min_requests, threshold],
            )  # noqa: S608 - SQL from USER_RULE_METRICS
        else:
            prefilter = ""
            if spec["additive"] and above and threshold >= 0:
                prefilter = f"""AND (a.user_id, a.day) IN (
                    SELECT b.user_id, b.day FROM rollups_dailyuserspend b
                    WHERE b.project_id = %s AND b.day = ANY(%s::date[]) AND {spec["row"].replace("a.", "b.")} > %s)"""
                pre_params = [project_id, days, threshold / environments]
            # The grouping holds a hash entry per user and day (~500 bytes with numeric sums): at
            # 100k users the default 4 MB work_mem spills it to disk in batches.
            cursor.execute(f"SET LOCAL work_mem = '{USER_RULE_WORK_MEM}'")
            cursor.execute(
                f"""
                SELECT a.user_id, a.day, ({spec["summed"]})::float8 AS value, sum(a.requests)::bigint
                FROM rollups_dailyuserspend a
                WHERE a.project_id = %s AND a.day = ANY(%s::date[]) {prefilter}
                GROUP BY a.user_id, a.day
                HAVING sum(a.requests) >= %s AND ({spec["summed"]}) {op} %s
                ORDER BY value {order}, a.user_id, a.day
            """,
                [project_id, days, *pre_params, min_requests, threshold],
            )  # noqa: S608 - SQL from USER_RULE_METRICS
        return [UserDayValue(user_id=u, day=d, value=float(v), requests=int(r)) for u, d, v, r in cursor.fetchall()]


# --- models a project calls (alerts' new-model and unpriced notices) --------------------------


@dataclass(frozen=True)
class ModelSeen:
    project_id: int
    model: str
    unpriced: bool  # some of its calls had no known price


def models_seen(*, project_ids: list[int] | None, since: date) -> list[ModelSeen]:
    """Every (project, model) with calls on a UTC day from `since` on (all projects when
    `project_ids` is None), read from the per-model daily slice: one row per day and model, so
    this costs the same whatever the number of services, features and calls."""
    where = "dims = %s AND day >= %s"
    params: list[Any] = [SLICE_MODEL, since]
    if project_ids is not None:
        where += " AND project_id = ANY(%s)"
        params.append(list(project_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT project_id, model, bool_or(unpriced_requests > 0) FROM rollups_dailyslice
                           WHERE {where} GROUP BY project_id, model ORDER BY project_id, model""",  # noqa: S608
            params,
        )
        return [ModelSeen(project_id, model, unpriced) for project_id, model, unpriced in cursor.fetchall()]


@dataclass(frozen=True)
class FirstCall:
    hour_start: datetime  # the UTC hour of the first call the aggregates hold
    environment: str
    service: str


def model_first_call(*, project_id: int, model: str, since: date, unpriced: bool = False) -> FirstCall | None:
    """The first hour from `since` on with a call of `model` (with `unpriced`: an unpriced call),
    and the environment and service that made most of that hour's such calls. The daily slice
    finds the day, so only that day's hourly rows are read."""
    unpriced_sql = "AND unpriced_requests > 0" if unpriced else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT min(day) FROM rollups_dailyslice WHERE dims = %s AND project_id = %s
                           AND model = %s AND day >= %s {unpriced_sql}""",  # noqa: S608
            [SLICE_MODEL, project_id, model, since],
        )
        day = cursor.fetchone()[0]
        if day is None:
            return None
        start = datetime.combine(day, time.min, tzinfo=UTC)
        cursor.execute(
            f"""SELECT a.hour_start, env.name, a.service FROM rollups_hourlyaggregate a
                           JOIN projects_environment env ON env.id = a.environment_id
                           WHERE a.project_id = %s AND a.model = %s AND a.hour_start >= %s AND a.hour_start < %s
                           {unpriced_sql.replace("unpriced", "a.unpriced")}
                           GROUP BY a.hour_start, env.name, a.service
                           ORDER BY a.hour_start, sum(a.{"unpriced_requests" if unpriced else "requests"}) DESC,
                                    env.name, a.service LIMIT 1""",  # noqa: S608
            [project_id, model, start, start + timedelta(days=1)],
        )
        row = cursor.fetchone()
    if row is None:  # hourly rows already past their retention: the day is all we know
        return FirstCall(hour_start=start, environment="", service="")
    return FirstCall(hour_start=row[0], environment=row[1], service=row[2])
