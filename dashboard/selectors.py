"""Reads for the dashboard pages: one function per page, each returning plain series.

Every page except the events explorer reads aggregates only (DESIGN: never scan raw
events for a chart), through `rollups.selectors.metrics_query` where it can: the
series call (zero-filled buckets) plus at most one grouped call and one call for the
previous period. What `metrics_query` does not offer yet is read here straight from the
aggregate tables (error/status maps, per-user spend, the filter choices); those reads
belong in rollups/selectors.py once it grows them.

The event detail (and the explorer, dashboard/explorer.py) read `ingest_event`, always
bounded by project and time so partition pruning and the indexes do the work.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet, Sum

from dashboard.forms import DIMENSIONS, Filters
from ingest.models import Event, EventKey
from projects.models import Project
from rollups.models import DailyAggregate, DailyUserSpend
from rollups.selectors import TOTAL, MetricsQuery, MetricsResult, MetricsRow, aggregate_table, metrics_query

TOP_STACKS = 8  # more series than this in a stacked bar is unreadable: the rest become "other"
TOP_USERS = 10
# Raw events are dropped after the project's retention; ingest accepts timestamps up to 30
# days old. An event looked up without its timestamp is searched this far back.
DETAIL_LOOKBACK_SLACK = timedelta(days=7)


# --- scope: which project, which filter choices ------------------------------------------------


@dataclass
class Scope:
    projects: list[Project]
    project: Project | None
    has_events: bool
    choices: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def scope_resolve(filters: Filters, *, projects: QuerySet[Project]) -> Scope:
    """The selected project among `projects` (the user's visible ones; default: the first, by slug,
    that has data) and the filter choices. A slug outside `projects` is treated as unknown."""
    visible = list(projects.order_by("slug"))
    project = next((p for p in visible if p.slug == filters.project_slug), None)
    notes = []
    if project is None and filters.project_slug:
        notes.append(f"No project {filters.project_slug!r} that you can see; showing the default one.")
    if project is None and visible:
        with_data = projects.filter(Exists(DailyAggregate.objects.filter(project=OuterRef("pk"))))
        project = with_data.order_by("slug").first() or visible[0]
    if project is None:
        return Scope(projects=[], project=None, has_events=False, notes=notes)
    # EventKey covers events not rolled up yet; aggregates cover events past raw retention.
    has_events = (DailyAggregate.objects.filter(project=project).exists()
                  or EventKey.objects.filter(project_id=project.pk).exists())
    scope = Scope(projects=visible, project=project, has_events=has_events, notes=notes)
    if has_events:
        scope.choices = _choices(project.pk, filters)
    return scope


def _choices(project_id: int, filters: Filters) -> dict[str, list[str]]:
    """Environments, services and models seen in the range (daily rows: a few per day)."""
    rows = (DailyAggregate.objects.filter(project_id=project_id, day__gte=filters.from_date, day__lte=filters.to_date)
            .values_list("environment__name", "service", "model").distinct())
    seen: dict[str, set[str]] = {name: set() for name in DIMENSIONS}
    for environment, service, model in rows:
        seen["environment"].add(environment)
        seen["service"].add(service)
        seen["model"].add(model)
    for name in DIMENSIONS:
        if getattr(filters, name):  # keep the selected value selectable even if the range lacks it
            seen[name].add(getattr(filters, name))
    return {name: sorted(values) for name, values in seen.items()}


# --- plain series -------------------------------------------------------------------------------


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _cached_share(d: dict[str, Any]) -> float | None:
    """Share of prompt tokens read from cache (Anthropic's input_tokens excludes cached ones)."""
    prompt = d["input_tokens"] + d["cache_read_input_tokens"] + d["cache_creation_input_tokens"]
    return _rate(d["cache_read_input_tokens"], prompt)


@dataclass
class TimeSeries:
    """One value per bucket; None where a bucket has no calls to take a rate or latency of."""

    buckets: list[datetime] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[Any]:
        return self.values[name]


_SERIES_FIELDS = ("requests", "errors", "cost_usd", "cache_savings_usd", "input_tokens", "output_tokens",
                  "cache_read_input_tokens", "cache_creation_input_tokens", "cache_write_5m_tokens",
                  "cache_write_1h_tokens", "unpriced_requests")
_WHEN_CALLS = ("error_rate", "cache_hit_rate", "latency_avg_ms", "latency_p50_ms", "latency_p95_ms",
               "latency_p99_ms")


def summary(row: MetricsRow) -> dict[str, Any]:
    """A row's numbers (CONTRACT §4 names) plus the cached share; rates and latencies None without calls,
    spend None when every call is unpriced."""
    d = row.as_dict()
    d["cached_share"] = _cached_share(d)
    if not d["requests"]:
        d.update(dict.fromkeys(_WHEN_CALLS))
    elif d["unpriced_requests"] == d["requests"]:
        d["cost_usd"] = None  # DESIGN: calls without a known price are shown as unpriced, never as $0
    return d


def series_of(result: MetricsResult) -> TimeSeries:
    out = TimeSeries(values={name: [] for name in (*_SERIES_FIELDS, *_WHEN_CALLS, "cached_share")})
    for row in result.series:
        out.buckets.append(row.bucket)  # type: ignore[arg-type]
        d = summary(row)
        for name, values in out.values.items():
            values.append(d[name])
    return out


def buckets_of(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    """Bucket starts covering [start, end), as metrics_query zero-fills them."""
    step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
    bucket = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if granularity == "day":
        bucket = bucket.replace(hour=0)
    out = []
    while bucket < end:
        out.append(bucket)
        bucket += step
    return out


def stacks_of(rows: Iterable[MetricsRow], dimension: str, buckets: list[datetime],
              value: Callable[[MetricsRow], float], top: int = TOP_STACKS) -> dict[str, list[float]]:
    """Per value of `dimension`, one number per bucket; the largest `top`, the rest summed as "other"."""
    index = {b.timestamp(): i for i, b in enumerate(buckets)}
    per: dict[str, list[float]] = {}
    for row in rows:
        i = index.get(row.bucket.timestamp()) if row.bucket else None
        if i is not None:
            per.setdefault(row.group[dimension] or "(none)", [0.0] * len(buckets))[i] += value(row)
    ranked = sorted(per, key=lambda name: (-sum(per[name]), name))
    out = {name: per[name] for name in ranked[:top] if any(per[name])}
    rest = ranked[top:]
    if rest:
        out["other"] = [sum(per[name][i] for name in rest) for i in range(len(buckets))]
    return out


@dataclass
class BreakdownRow:
    name: str
    requests: int
    cost_usd: float | None
    spend_share: float | None
    errors: int
    error_rate: float | None
    latency_avg_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    unpriced_requests: int


def breakdown_of(rows: Iterable[MetricsRow], dimension: str) -> list[BreakdownRow]:
    """Rows of a grouped call merged per value of `dimension` (histograms merge exactly), by spend."""
    merged: dict[str, MetricsRow] = {}
    for row in rows:
        name = row.group[dimension]
        merged.setdefault(name, MetricsRow(bucket=None, group={dimension: name})).add(row)
    total_cost = sum((r.cost_usd for r in merged.values()), Decimal(0))
    out = []
    for name, row in merged.items():
        d = summary(row)
        out.append(BreakdownRow(
            name=name or "(none)", requests=d["requests"], cost_usd=d["cost_usd"],
            spend_share=float(row.cost_usd / total_cost) if total_cost else None, errors=d["errors"],
            error_rate=d["error_rate"], latency_avg_ms=d["latency_avg_ms"], latency_p50_ms=d["latency_p50_ms"],
            latency_p95_ms=d["latency_p95_ms"], latency_p99_ms=d["latency_p99_ms"],
            unpriced_requests=d["unpriced_requests"],
        ))
    return sorted(out, key=lambda r: (-(r.cost_usd or 0), -r.requests, r.name))


def _query(filters: Filters, project: Project, *, start: datetime | None = None, end: datetime | None = None,
           granularity: str | None = None, group_by: list[str] | None = None) -> MetricsQuery:
    return MetricsQuery(project_ids=[project.pk], start=start or filters.start, end=end or filters.end,
                        granularity=granularity or filters.granularity, group_by=group_by or [],
                        filters=filters.metric_filters)


# --- KPIs ---------------------------------------------------------------------------------------


@dataclass
class Kpi:
    key: str
    label: str
    unit: str  # count | usd | ms | pct
    value: float | None
    previous: float | None
    higher_is: str = "neutral"  # good | bad | neutral: colours the change
    note: str = ""

    @property
    def change(self) -> float | None:
        """Relative change vs the previous period; None when there is nothing to compare with."""
        if self.value is None or self.previous is None or self.previous == 0:
            return None
        return (self.value - self.previous) / self.previous

    @property
    def direction(self) -> str:
        if self.change is None or abs(self.change) < 0.0005:
            return "flat"
        return "up" if self.change > 0 else "down"

    @property
    def tone(self) -> str:
        if self.direction == "flat" or self.higher_is == "neutral":
            return "neutral"
        return "good" if (self.direction == "up") == (self.higher_is == "good") else "bad"


def overview_kpis(current: dict[str, Any], previous: dict[str, Any]) -> list[Kpi]:
    """The field guide's six daily-dashboard numbers, each against the previous period."""
    def prev(name: str) -> float | None:
        return previous[name] if previous["requests"] else None

    return [
        Kpi("requests", "Requests", "count", current["requests"], prev("requests")),
        Kpi("spend", "Spend", "usd", current["cost_usd"], prev("cost_usd"), "bad",
            note=f"excludes {current['unpriced_requests']:,} unpriced" if current["unpriced_requests"] else ""),
        Kpi("latency_avg", "Average latency", "ms", current["latency_avg_ms"], prev("latency_avg_ms"), "bad"),
        Kpi("latency_p95", "P95 latency", "ms", current["latency_p95_ms"], prev("latency_p95_ms"), "bad"),
        Kpi("error_rate", "Error rate", "pct", current["error_rate"], prev("error_rate"), "bad"),
        Kpi("cache_hit_rate", "Cache hit rate", "pct", current["cache_hit_rate"], prev("cache_hit_rate"), "good"),
    ]


# --- pages --------------------------------------------------------------------------------------


@dataclass
class Page:
    """What every page has: the scope, 'data as of', and whether there is anything to show."""

    filters: Filters
    scope: Scope
    as_of: datetime | None = None
    series: TimeSeries = field(default_factory=TimeSeries)
    totals: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.scope.has_events

    @property
    def range_empty(self) -> bool:
        return not self.empty and not self.totals.get("requests")


def _page(filters: Filters, projects: QuerySet[Project]) -> tuple[Page, Project | None]:
    scope = scope_resolve(filters, projects=projects)
    page = Page(filters=filters, scope=scope)
    return page, (scope.project if scope.has_events else None)


def _with_series(page: Page, result: MetricsResult) -> None:
    page.series = series_of(result)
    page.totals = summary(result.totals)
    page.as_of = result.as_of


@dataclass
class UserSpend:
    user_id: str
    requests: int
    errors: int
    cost_usd: float
    unpriced_requests: int


def top_users(project: Project, filters: Filters, limit: int = TOP_USERS) -> list[UserSpend]:
    """Top end users by spend, over the UTC days the range touches (user spend is kept per day and
    environment, so a 24-hour range counts two calendar days, and service/model filters can't apply)."""
    last_day = (filters.end - timedelta(microseconds=1)).astimezone(UTC).date()
    qs = DailyUserSpend.objects.filter(project=project, day__gte=filters.start.astimezone(UTC).date(),
                                       day__lte=last_day)
    if filters.environment:
        qs = qs.filter(environment__name=filters.environment)
    rows = (qs.values("user_id").annotate(requests=Sum("requests"), errors=Sum("errors"), cost=Sum("cost_usd"),
                                          unpriced=Sum("unpriced_requests"))
            .order_by("-cost", "-requests", "user_id")[:limit])
    return [UserSpend(user_id=r["user_id"], requests=r["requests"], errors=r["errors"], cost_usd=float(r["cost"]),
                      unpriced_requests=r["unpriced"]) for r in rows]


def overview_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """KPIs with their change, the five charts' series, breakdowns and top users: three metrics calls."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    _with_series(page, metrics_query(_query(filters, project)))
    prev_start, prev_end = filters.previous
    previous = metrics_query(_query(filters, project, start=prev_start, end=prev_end, granularity="day"),
                             with_as_of=False)
    page.data["kpis"] = overview_kpis(page.totals, summary(previous.totals))
    page.data["previous"] = (prev_start, prev_end)
    # One row per group over the whole range (no buckets), one call per dimension: each reads
    # the daily slice of just that dimension, a few rows a day.
    page.data["breakdowns"] = {
        dim: breakdown_of(metrics_query(_query(filters, project, granularity=TOTAL, group_by=[dim]),
                                        with_as_of=False).series, dim)
        for dim in ("model", "service", "environment")
    }
    page.data["top_users"] = top_users(project, filters)
    page.data["users_filter_note"] = bool(filters.service or filters.model)
    return page


@dataclass
class MonthToDate:
    month_start: datetime
    spend_usd: float
    days_elapsed: float
    days_in_month: int
    projected_usd: float
    unpriced_requests: int
    days: list[datetime]
    cumulative_usd: list[float]

    @property
    def daily_avg_usd(self) -> float:
        return self.spend_usd / self.days_elapsed

    @property
    def last_day(self) -> datetime:
        return self.month_start.replace(day=self.days_in_month)


def month_to_date(project: Project, filters: Filters) -> MonthToDate:
    """This UTC month's spend, and a linear projection: MTD spend / days elapsed x days in month."""
    now = filters.now.astimezone(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    tomorrow = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    result = metrics_query(_query(filters, project, start=month_start, end=tomorrow, granularity="day"),
                           with_as_of=False)
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    # Elapsed time counts today's hours so far, so a morning doesn't read as a whole day.
    days_elapsed = max((now - month_start).total_seconds() / 86400, 1 / 24)
    spend = float(result.totals.cost_usd)
    running, cumulative = 0.0, []
    for row in result.series:
        running += float(row.cost_usd)
        cumulative.append(running)
    return MonthToDate(
        month_start=month_start, spend_usd=spend, days_elapsed=days_elapsed, days_in_month=days_in_month,
        projected_usd=spend / days_elapsed * days_in_month,
        unpriced_requests=result.totals.sums.get("unpriced_requests", 0),
        days=[row.bucket for row in result.series if row.bucket], cumulative_usd=cumulative,
    )


def spend_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """Spend stacked by model and by service (one grouped call), month to date (one call)."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    grouped = metrics_query(_query(filters, project, group_by=["model", "service"]))
    page.totals = summary(grouped.totals)
    page.as_of = grouped.as_of
    page.series.buckets = buckets_of(filters.start, filters.end, filters.granularity)
    for dim in ("model", "service"):
        page.data[f"by_{dim}"] = stacks_of(grouped.series, dim, page.series.buckets, lambda r: float(r.cost_usd))
    page.data["models"] = breakdown_of(grouped.series, "model")
    page.data["unpriced_models"] = [(r.name, r.unpriced_requests) for r in page.data["models"] if r.unpriced_requests]
    page.data["mtd"] = month_to_date(project, filters)
    return page


def latency_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """Percentiles over time (series call) and per model (grouped call over the whole range)."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    _with_series(page, metrics_query(_query(filters, project)))
    grouped = metrics_query(_query(filters, project, granularity=TOTAL, group_by=["model"]), with_as_of=False)
    page.data["models"] = sorted(breakdown_of(grouped.series, "model"), key=lambda r: -(r.latency_p95_ms or 0))
    return page


def _dimension_sql(query: MetricsQuery) -> tuple[str, str, str, list[Any]]:
    """(FROM clause, bucket expression, WHERE, params) with metrics_query's table and bucket rules."""
    table, dims_where, dims_params = aggregate_table(query)
    if query.uses_daily_table:
        bucket = "(a.day::timestamp AT TIME ZONE 'UTC')"
        where = ["a.project_id = ANY(%s)", "a.day >= %s", "a.day < %s"]
        params: list[Any] = [query.project_ids, query.start.astimezone(UTC).date(), query.end.astimezone(UTC).date()]
    else:
        bucket = ("a.hour_start" if query.granularity == "hour"
                  else "(date_trunc('day', a.hour_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')")
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


def errors_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """Error rate over time (series call) and errors by type / by HTTP status (the jsonb maps)."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    query = _query(filters, project)
    _with_series(page, metrics_query(query))
    maps = error_maps(query, page.series.buckets)
    page.data["by_type"] = maps["type"]
    page.data["by_status"] = maps["status"]
    page.data["type_totals"] = [(name, sum(counts)) for name, counts in maps["type"].items()]
    page.data["status_totals"] = sorted(((code, sum(counts)) for code, counts in maps["status"].items()),
                                        key=lambda kv: kv[0])
    return page


def cache_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """Hit rate, cached share of prompt tokens, savings and 5m/1h writes: all from the series call."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    _with_series(page, metrics_query(_query(filters, project)))
    return page


# --- raw events: the detail page (the explorer: dashboard/explorer.py) -------------------------------------------------


@dataclass
class EventDetail:
    project: Project
    event: Event
    fields: list[tuple[str, Any]]


def event_detail(*, project_slug: str, event_id: int, at: datetime | None, now: datetime,
                 projects: QuerySet[Project]) -> EventDetail | None:
    """One event, whole, of one of `projects` (the user's visible ones). `at` (its timestamp, carried
    by the explorer's links) pins one partition; without it the search is bounded by raw retention,
    so it never touches every partition ever made."""
    projects = projects.order_by("slug")
    project = projects.filter(slug=project_slug).first() if project_slug else projects.first()
    if project is None:
        return None
    events = Event.objects.select_related("environment").filter(project_id=project.pk, pk=event_id)
    if at is not None:
        events = events.filter(timestamp=at)
    else:
        lookback = timedelta(days=max(project.raw_retention_days, 30)) + DETAIL_LOOKBACK_SLACK
        events = events.filter(timestamp__gte=now - lookback, timestamp__lt=now + timedelta(days=1))
    event = events.first()
    if event is None:
        return None
    fields = [("project", project.slug), ("environment", event.environment.name if event.environment else "")]
    for f in Event._meta.concrete_fields:
        if f.name not in ("project", "environment"):
            fields.append((f.name, getattr(event, f.attname)))
    return EventDetail(project=project, event=event, fields=fields)
