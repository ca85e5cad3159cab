"""Reads for the dashboard pages: one function per page, each returning plain series.

Every page except the events explorer reads aggregates only (DESIGN: never scan raw
events for a chart), through `rollups.selectors.metrics_query` where it can: the
series call (zero-filled buckets) plus at most one grouped call and one call for the
previous period. What `metrics_query` does not offer (error/status maps, per-user spend,
the filter choices) comes from rollups.selectors' other reads; this module only shapes.

The event detail reads one raw event through ingest.selectors, and so does the explorer
(dashboard/explorer.py) read its calls, always bounded by project and time so partition
pruning and the indexes do the work.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.urls import reverse

from alerts.selectors import ChartAlerts, chart_alerts
from dashboard.forms import METRIC_DIMENSIONS, Filters, rfc3339
from ingest.selectors import event_fields, event_get, events_exist
from pricing.services import TOKEN_FIELDS
from rollups.selectors import (
    TOTAL,
    MetricsQuery,
    MetricsResult,
    MetricsRow,
    UserSpend,
    dimension_values,
    error_maps,
    first_project_with_aggregates,
    metrics_query,
    project_has_aggregates,
    user_spend_by_day,
    user_spend_top,
)

if TYPE_CHECKING:
    from ingest.models import Event
    from projects.models import Project

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
        project = first_project_with_aggregates(projects=projects) or visible[0]
    if project is None:
        return Scope(projects=[], project=None, has_events=False, notes=notes)
    # EventKey covers events not rolled up yet; aggregates cover events past raw retention.
    has_events = project_has_aggregates(project_id=project.pk) or events_exist(project_id=project.pk)
    scope = Scope(projects=visible, project=project, has_events=has_events, notes=notes)
    if has_events:
        scope.choices = _choices(project.pk, filters)
    return scope


def _choices(project_id: int, filters: Filters) -> dict[str, list[str]]:
    """Environments, services, models and features seen in the range (daily rows: a few per day).
    End users are too many for a select: the filter bar has a search box for them."""
    rows = dimension_values(project_id=project_id, first_day=filters.from_date, last_day=filters.to_date)
    seen: dict[str, set[str]] = {name: set() for name in METRIC_DIMENSIONS}
    for environment, service, model, feature in rows:
        seen["environment"].add(environment)
        seen["service"].add(service)
        seen["model"].add(model)
        if feature:
            seen["feature"].add(feature)
    for name in METRIC_DIMENSIONS:
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


_SERIES_FIELDS = (
    "requests",
    "errors",
    "cost_usd",
    "cache_savings_usd",
    *TOKEN_FIELDS,
    "unpriced_requests",
)
_WHEN_CALLS = ("error_rate", "cache_hit_rate", "latency_avg_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


# What per-user spend (rollups_dailyuserspend: per UTC day, environment and user_id) knows.
PER_USER_KNOWN = ("requests", "errors", "error_rate", "cost_usd", "unpriced_requests")


def summary(row: MetricsRow, *, per_user: bool = False) -> dict[str, Any]:
    """A row's numbers (CONTRACT §4 names) plus the cached share; rates and latencies None without calls,
    spend None when every call is unpriced; with `per_user`, everything per-user spend doesn't keep None."""
    d = row.as_dict()
    d["cached_share"] = _cached_share(d)
    if not d["requests"]:
        d.update(dict.fromkeys(_WHEN_CALLS))
    elif d["unpriced_requests"] == d["requests"]:
        d["cost_usd"] = None  # DESIGN: calls without a known price are shown as unpriced, never as $0
    if not row.online_requests:
        # Message Batches results only: latency is of online calls, so there is none (not 0 ms).
        d.update(dict.fromkeys(("latency_avg_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")))
    if per_user:
        d.update({name: None for name in d if name not in PER_USER_KNOWN and name not in ("bucket", "group")})
    return d


def series_of(result: MetricsResult, *, per_user: bool = False) -> TimeSeries:
    out = TimeSeries(values={name: [] for name in (*_SERIES_FIELDS, *_WHEN_CALLS, "cached_share")})
    for row in result.series:
        # A series' rows have a bucket (only a TOTAL query's is None).
        out.buckets.append(row.bucket)  # type: ignore[arg-type]
        d = summary(row, per_user=per_user)
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


def stacks_of(
    rows: Iterable[MetricsRow],
    dimension: str,
    buckets: list[datetime],
    value: Callable[[MetricsRow], float],
    top: int = TOP_STACKS,
) -> dict[str, list[float]]:
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
        out.append(
            BreakdownRow(
                name=name or "(none)",
                requests=d["requests"],
                cost_usd=d["cost_usd"],
                spend_share=float(row.cost_usd / total_cost) if total_cost else None,
                errors=d["errors"],
                error_rate=d["error_rate"],
                latency_avg_ms=d["latency_avg_ms"],
                latency_p50_ms=d["latency_p50_ms"],
                latency_p95_ms=d["latency_p95_ms"],
                latency_p99_ms=d["latency_p99_ms"],
                unpriced_requests=d["unpriced_requests"],
            )
        )
    return sorted(out, key=lambda r: (-(r.cost_usd or 0), -r.requests, r.name))


def _query(
    filters: Filters,
    project: Project,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    granularity: str | None = None,
    group_by: list[str] | None = None,
    histograms: bool = True,
    ttft: bool = True,
) -> MetricsQuery:
    return MetricsQuery(
        project_ids=[project.pk],
        start=start or filters.start,
        end=end or filters.end,
        granularity=granularity or filters.granularity,
        group_by=group_by or [],
        filters=filters.metric_filters,
        histograms=histograms,
        ttft=ttft,
    )


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
        Kpi(
            "spend",
            "Spend",
            "usd",
            current["cost_usd"],
            prev("cost_usd"),
            "bad",
            note=f"excludes {current['unpriced_requests']:,} unpriced" if current["unpriced_requests"] else "",
        ),
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
    alerts: ChartAlerts = field(default_factory=ChartAlerts)
    # The previous period, bucket for bucket (the `compare` overlay); None when not asked.
    previous_series: TimeSeries | None = None

    @property
    def empty(self) -> bool:
        return not self.scope.has_events

    @property
    def range_empty(self) -> bool:
        return not self.empty and not self.totals.get("requests")

    @property
    def per_user(self) -> bool:
        """Numbers read from per-user spend (a user filter): daily buckets, PER_USER_KNOWN only."""
        return bool(self.filters.user)

    @property
    def granularity(self) -> str:
        return "day" if self.per_user else self.filters.granularity

    @property
    def overlays(self) -> dict[str, Any]:
        return overlays_of(self.alerts, project_slug=self.scope.project.slug if self.scope.project else "")

    @property
    def drill(self) -> dict[str, Any]:
        """What charts.js needs to open the calls behind a clicked bucket: the explorer URL with the
        page's project and filters, and the page's range (a bucket is clipped to it)."""
        params = self.filters.calls_params()
        del params["from"], params["to"]
        return {
            "url": f"{reverse('dashboard:events')}?{urlencode(params)}",
            "start": rfc3339(self.filters.start),
            "end": rfc3339(self.filters.end),
        }

    @property
    def calls_url(self) -> str:
        """The events explorer behind this page's whole range and filters (agreement 2)."""
        return f"{reverse('dashboard:events')}?{urlencode(self.filters.calls_params())}"


def overlays_of(alerts: ChartAlerts, *, project_slug: str) -> dict[str, Any]:
    """The rules, incidents and budgets as the charts draw them (dashboard/charts.py `decorate`)."""
    query = f"?{urlencode({'project': project_slug})}"
    rule_url = {r.rule.pk: reverse("alerts_ui:rule", args=[r.rule.pk]) + query for r in alerts.rules}
    return {
        "rules": [
            {
                "name": r.rule.name,
                "metric": r.rule.metric,
                "window": r.rule.window,
                "condition": r.rule.condition,
                "threshold": r.rule.threshold,
                "sensitivity": r.rule.sensitivity or 3.0,
                "band": r.band,
                "url": rule_url[r.rule.pk],
            }
            for r in alerts.rules
        ],
        "incidents": [
            {
                "rule": i.rule.name,
                "metric": i.rule.metric,
                "start": i.start,
                "end": i.end,
                "open": i.incident.resolved_at is None,
                "value": i.incident.value,
                "threshold": i.incident.threshold,
                "baseline": i.incident.baseline,
                "url": rule_url[i.rule.pk],
            }
            for i in alerts.incidents
        ],
        "budgets": [
            {
                "name": b.name,
                "period": b.period,
                "limit_usd": float(b.limit_usd),
                "url": reverse("alerts_ui:budgets") + query,
            }
            for b in alerts.budgets
        ],
    }


def _page(filters: Filters, projects: QuerySet[Project]) -> tuple[Page, Project | None]:
    scope = scope_resolve(filters, projects=projects)
    page = Page(filters=filters, scope=scope)
    project = scope.project if scope.has_events else None
    if project is not None:
        page.alerts = chart_alerts(
            project_id=project.pk,
            start=filters.start,
            end=filters.end,
            now=filters.now,
            band_window=page.granularity,
            environment=filters.environment,
            service=filters.service,
            model=filters.model,
            feature=filters.feature,
            user_id=filters.user,
        )
    return page, project


def _with_series(page: Page, result: MetricsResult) -> None:
    page.series = series_of(result, per_user=page.per_user)
    page.totals = summary(result.totals, per_user=page.per_user)
    page.as_of = result.as_of
    project = page.scope.project
    if page.filters.compare and project is not None:
        start, end = page.filters.previous_whole
        previous = _series_result(
            page.filters, project, start=start, end=end, granularity=page.granularity, with_as_of=False
        )
        page.previous_series = series_of(previous, per_user=page.per_user)


def user_metrics(
    project: Project, filters: Filters, *, start: datetime, end: datetime, with_as_of: bool = True
) -> MetricsResult:
    """Per-user numbers of `filters.user` per UTC day, zero-filled, over every day [start, end) touches.

    End users are many, so the rollup keeps them apart from the other dimensions: per day and
    environment, requests, errors and spend only (rollups_dailyuserspend). Only the environment
    filter applies; the page says so.
    """
    first = start.astimezone(UTC).date()
    last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    per_day = user_spend_by_day(
        project_id=project.pk, user_id=filters.user, first_day=first, last_day=last, environment=filters.environment
    )
    series, totals = [], MetricsRow(bucket=None, group={})
    for bucket in buckets_of(start, end, "day"):
        row = MetricsRow(bucket=bucket, group={})
        found = per_day.get(bucket.date())
        if found:
            row.sums = {
                "requests": found["requests"],
                "errors": found["errors"],
                "unpriced_requests": found["unpriced"],
            }
            row.cost_usd = found["cost"]
        series.append(row)
        totals.add(row)
    as_of = None
    if with_as_of:  # an empty range: just "data as of"
        as_of = metrics_query(MetricsQuery(project_ids=[project.pk], start=end, end=end, granularity=TOTAL)).as_of
    return MetricsResult(granularity="day", series=series, totals=totals, as_of=as_of)


def _series_result(
    filters: Filters,
    project: Project,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    granularity: str | None = None,
    with_as_of: bool = True,
) -> MetricsResult:
    """The page's time series: from the aggregates, or from per-user spend under a user filter."""
    if filters.user:
        return user_metrics(
            project, filters, start=start or filters.start, end=end or filters.end, with_as_of=with_as_of
        )
    return metrics_query(_query(filters, project, start=start, end=end, granularity=granularity), with_as_of=with_as_of)


def top_users(project: Project, filters: Filters, limit: int = TOP_USERS) -> list[UserSpend]:
    """Top end users by spend, over the UTC days the range touches (user spend is kept per day and
    environment, so a 24-hour range counts two calendar days, and service/model/feature filters can't
    apply). Under a user filter, that user only."""
    last_day = (filters.end - timedelta(microseconds=1)).astimezone(UTC).date()
    return user_spend_top(
        project_id=project.pk,
        first_day=filters.start.astimezone(UTC).date(),
        last_day=last_day,
        environment=filters.environment,
        user_id=filters.user,
        limit=limit,
    )


BREAKDOWN_DIMENSIONS = ("model", "service", "feature", "environment")


def overview_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """KPIs with their change, the six charts' series, breakdowns and top users: a series call, one for
    the previous period, one per breakdown dimension (per-user spend only under a user filter)."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    _with_series(page, _series_result(filters, project))
    prev_start, prev_end = filters.previous
    previous = _series_result(filters, project, start=prev_start, end=prev_end, granularity="day", with_as_of=False)
    page.data["kpis"] = overview_kpis(page.totals, summary(previous.totals, per_user=page.per_user))
    if page.per_user:
        for kpi in page.data["kpis"]:
            if kpi.key in ("latency_avg", "latency_p95", "cache_hit_rate"):
                kpi.note = "not kept per end user"
    page.data["previous"] = (prev_start, prev_end)
    # One row per group over the whole range (no buckets), one call per dimension: each reads
    # the daily slice of just that dimension, a few rows a day.
    page.data["breakdowns"] = (
        {}
        if page.per_user
        else {
            dim: breakdown_of(
                metrics_query(
                    _query(filters, project, granularity=TOTAL, group_by=[dim], ttft=False), with_as_of=False
                ).series,
                dim,
            )
            for dim in BREAKDOWN_DIMENSIONS
        }
    )
    page.data["top_users"] = top_users(project, filters)
    page.data["users_filter_note"] = bool(filters.service or filters.model or filters.feature)
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
    result = _series_result(filters, project, start=month_start, end=tomorrow, granularity="day", with_as_of=False)
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    # Elapsed time counts today's hours so far, so a morning doesn't read as a whole day.
    days_elapsed = max((now - month_start).total_seconds() / 86400, 1 / 24)
    spend = float(result.totals.cost_usd)
    running, cumulative = 0.0, []
    for row in result.series:
        running += float(row.cost_usd)
        cumulative.append(running)
    return MonthToDate(
        month_start=month_start,
        spend_usd=spend,
        days_elapsed=days_elapsed,
        days_in_month=days_in_month,
        projected_usd=spend / days_elapsed * days_in_month,
        unpriced_requests=result.totals.sums.get("unpriced_requests", 0),
        days=[row.bucket for row in result.series if row.bucket],
        cumulative_usd=cumulative,
    )


def spend_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """Spend stacked by model and by service (one grouped call), by feature (one call), month to date
    (one call). Under a user filter: that user's daily spend (per-user spend has no model or service)."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    if page.per_user:
        _with_series(page, _series_result(filters, project))
        page.data.update(by_model={}, by_service={}, models=[], features=[], unpriced_models=[])
        page.data["mtd"] = month_to_date(project, filters)
        return page
    # The Spend page shows no percentile: sums only (the histograms were two thirds of its time).
    grouped = metrics_query(_query(filters, project, group_by=["model", "service"], histograms=False))
    page.totals = summary(grouped.totals)
    page.as_of = grouped.as_of
    page.series.buckets = buckets_of(filters.start, filters.end, filters.granularity)
    for dim in ("model", "service"):
        page.data[f"by_{dim}"] = stacks_of(grouped.series, dim, page.series.buckets, lambda r: float(r.cost_usd))
    if filters.compare:
        start, end = filters.previous_whole
        page.previous_series = series_of(
            metrics_query(_query(filters, project, start=start, end=end), with_as_of=False)
        )
    page.data["models"] = breakdown_of(grouped.series, "model")
    page.data["features"] = breakdown_of(
        metrics_query(
            _query(filters, project, granularity=TOTAL, group_by=["feature"], histograms=False), with_as_of=False
        ).series,
        "feature",
    )
    page.data["unpriced_models"] = [(r.name, r.unpriced_requests) for r in page.data["models"] if r.unpriced_requests]
    page.data["mtd"] = month_to_date(project, filters)
    return page


@dataclass
class LatencyRow:
    """A model's latency over the range: online calls, their time to first token, and batch turnaround."""

    name: str
    online_requests: int
    batch_requests: int
    latency_avg_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    batch_latency_avg_ms: float | None


_ONLINE_LATENCY = ("latency_avg_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


def latency_numbers(row: MetricsRow) -> dict[str, Any]:
    """A row's latency fields, None where there is nothing to measure: latency without online calls,
    TTFT without a streamed call that reported it, turnaround without batch calls."""
    d = row.as_dict()
    out = {
        name: d[name]
        for name in (*_ONLINE_LATENCY, "ttft_p50_ms", "ttft_p95_ms", "batch_latency_avg_ms", "batch_requests")
    }
    out["online_requests"] = row.online_requests
    if not row.online_requests:
        out.update(dict.fromkeys(_ONLINE_LATENCY))
    return out


def latency_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """Online latency percentiles, time to first token and batch turnaround over time (series call),
    and the same per model (grouped call over the whole range)."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    if page.per_user:
        # Latency is not kept per end user: the user's daily requests only, the charts say so.
        _with_series(page, _series_result(filters, project))
        page.data["models"] = []
        return page
    result = metrics_query(_query(filters, project))
    _with_series(page, result)
    # Message Batches results are not in latency: a bucket of batch calls only is a gap, not 0 ms.
    per_bucket = [latency_numbers(row) for row in result.series]
    for name in (
        *_ONLINE_LATENCY,
        "ttft_p50_ms",
        "ttft_p95_ms",
        "batch_latency_avg_ms",
        "batch_requests",
        "online_requests",
    ):
        page.series.values[name] = [numbers[name] for numbers in per_bucket]
    page.totals.update(latency_numbers(result.totals))
    grouped = metrics_query(_query(filters, project, granularity=TOTAL, group_by=["model"]), with_as_of=False)
    merged: dict[str, MetricsRow] = {}
    for row in grouped.series:
        merged.setdefault(row.group["model"], MetricsRow(bucket=None, group=row.group)).add(row)
    rows = [LatencyRow(name=name or "(none)", **latency_numbers(row)) for name, row in merged.items()]
    page.data["models"] = sorted(rows, key=lambda r: (-(r.latency_p95_ms or 0), -(r.batch_latency_avg_ms or 0), r.name))
    return page


def errors_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """Error rate over time (series call) and errors by type / by HTTP status (the jsonb maps; not
    kept per user, so empty under a user filter)."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    _with_series(page, _series_result(filters, project))
    maps: dict[str, dict[str, list[int]]] = {"type": {}, "status": {}}
    if not page.per_user:
        maps = error_maps(_query(filters, project), page.series.buckets)
    page.data["by_type"] = maps["type"]
    page.data["by_status"] = maps["status"]
    page.data["type_totals"] = [(name, sum(counts)) for name, counts in maps["type"].items()]
    page.data["status_totals"] = sorted(
        ((code, sum(counts)) for code, counts in maps["status"].items()), key=lambda kv: kv[0]
    )
    page.data["headroom"], page.data["rate_limited"] = {}, [0] * len(page.series.buckets)
    if not page.per_user:  # rate-limit headers are not kept per end user either
        page.data["headroom"], page.data["rate_limited"] = ratelimit_series(
            metrics_query(_query(filters, project, group_by=["model"]), with_as_of=False), page.series.buckets
        )
    return page


@dataclass
class CacheRow:
    """One service's or model's prompt caching over the range.

    `read_write_ratio`: cache tokens read per cache token written (None when nothing was written).
    `saved_usd`: the net saving (what cached and cache-written tokens would have cost as plain input,
    minus what they cost), so a negative one is a cache that costs more than it saves.
    """

    name: str
    requests: int
    cache_hits: int
    read_tokens: int
    written_tokens: int
    saved_usd: float

    @property
    def hit_rate(self) -> float | None:
        return _rate(self.cache_hits, self.requests)

    @property
    def read_write_ratio(self) -> float | None:
        return _rate(self.read_tokens, self.written_tokens)

    @property
    def wasted_writes(self) -> bool:
        """Writes the cache that reads never pay back: the write premium paid for nothing."""
        return self.written_tokens > 0 and self.saved_usd < 0


def cache_rows(rows: Iterable[MetricsRow], dimension: str) -> list[CacheRow]:
    """Rows of a grouped call merged per value of `dimension`, the biggest cache writers first."""
    merged: dict[str, MetricsRow] = {}
    for row in rows:
        merged.setdefault(row.group[dimension], MetricsRow(bucket=None, group={})).add(row)
    out = [
        CacheRow(
            name=name or "(none)",
            requests=row.requests,
            cache_hits=row.sums.get("cache_hits", 0),
            read_tokens=row.sums.get("cache_read_input_tokens", 0),
            written_tokens=row.sums.get("cache_creation_input_tokens", 0),
            saved_usd=float(row.cache_savings_usd),
        )
        for name, row in merged.items()
    ]
    return sorted(out, key=lambda r: (-r.written_tokens, -r.read_tokens, r.name))


_HEADROOM_FIELDS = (
    "ratelimit_requests_headroom_min",
    "ratelimit_input_tokens_headroom_min",
    "ratelimit_output_tokens_headroom_min",
)


def ratelimit_series(
    by_model: MetricsResult, buckets: list[datetime]
) -> tuple[dict[str, list[float | None]], list[int]]:
    """({model: the tightest rate-limit headroom per bucket, the lowest of requests, input and output
    tokens; None where no call reported the headers}, HTTP 429s per bucket). Models that never
    reported headers are left out."""
    index = {b.timestamp(): i for i, b in enumerate(buckets)}
    headroom: dict[str, list[float | None]] = {}
    limited = [0] * len(buckets)
    for row in by_model.series:
        i = index.get(row.bucket.timestamp()) if row.bucket else None
        if i is None:
            continue
        d = row.as_dict()
        limited[i] += d["rate_limited_requests"] or 0
        reported = [d[name] for name in _HEADROOM_FIELDS if d[name] is not None]
        if reported:
            headroom.setdefault(row.group["model"], [None] * len(buckets))[i] = min(reported)
    return dict(sorted(headroom.items())), limited


def cache_page(filters: Filters, *, projects: QuerySet[Project]) -> Page:
    """Hit rate, cached share of prompt tokens, savings and 5m/1h writes (the series call), and the same
    per service and per model with their read/write ratio (one grouped call over the whole range)."""
    page, project = _page(filters, projects)
    if project is None:
        return page
    _with_series(page, _series_result(filters, project))
    page.data["by_service"], page.data["by_model"] = [], []
    if not page.per_user:
        grouped = metrics_query(
            _query(filters, project, granularity=TOTAL, group_by=["service", "model"]), with_as_of=False
        ).series
        page.data["by_service"] = cache_rows(grouped, "service")
        page.data["by_model"] = cache_rows(grouped, "model")
    page.data["wasted"] = [r for r in page.data["by_service"] if r.wasted_writes]
    return page


# --- raw events: the detail page (the explorer: dashboard/explorer.py) -------------------------------------------------


@dataclass
class EventDetail:
    project: Project
    event: Event
    fields: list[tuple[str, Any]]


def event_detail(
    *, project_slug: str, event_id: int, at: datetime | None, now: datetime, projects: QuerySet[Project]
) -> EventDetail | None:
    """One event, whole, of one of `projects` (the user's visible ones). `at` (its timestamp, carried
    by the explorer's links) pins one partition; without it the search is bounded by raw retention,
    so it never touches every partition ever made."""
    projects = projects.order_by("slug")
    project = projects.filter(slug=project_slug).first() if project_slug else projects.first()
    if project is None:
        return None
    lookback = timedelta(days=max(project.raw_retention_days, 30)) + DETAIL_LOOKBACK_SLACK
    event = event_get(
        project_id=project.pk, event_id=event_id, at=at, start=now - lookback, end=now + timedelta(days=1)
    )
    if event is None:
        return None
    fields = [
        ("project", project.slug),
        ("environment", event.environment.name if event.environment else ""),
        *event_fields(event),
    ]
    return EventDetail(project=project, event=event, fields=fields)
