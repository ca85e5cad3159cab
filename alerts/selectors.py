"""Reads for alerting: a rule's metric per window, baselines, contributors, budget status,
and what the alerts pages show (rules with their state, incident history, the outbox).

Everything comes from the aggregates through rollups.selectors.metrics_query, never from
raw events, so evaluation costs the same at ten thousand or ten million calls.
"""

from __future__ import annotations

import calendar
import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Prefetch, Q

from alerts.formatting import (
    METRIC_LABELS,
    explanation_display,
    format_metric,
    incident_links,
    incident_window,
    provider_display,
    usd,
)
from alerts.models import (
    AlertRule,
    Budget,
    Condition,
    DigestSubscription,
    Incident,
    Metric,
    Notification,
    Per,
    ProjectChannels,
)
from projects.permissions import RequestUser, is_project_admin, visible_projects
from providers.selectors import Reconciliation, reconciliation
from rollups.selectors import (
    USER_RULE_METRICS,
    MetricsQuery,
    MetricsRow,
    error_maps,
    metrics_query,
    user_spend_by_day,
    users_breaching,
)

if TYPE_CHECKING:
    from projects.models import Project

# Metrics that are ratios or latencies: judged only with enough requests in the window.
GUARDED = {Metric.ERROR_RATE, Metric.LATENCY_P95_MS, Metric.LATENCY_AVG_MS, Metric.CACHE_HIT_RATE, Metric.TTFT_P95_MS}
# Latency is measured on online calls (not Message Batches results), time to first token on the
# online calls that reported one: those are the requests a latency window is judged on.
LATENCY = {Metric.LATENCY_P95_MS, Metric.LATENCY_AVG_MS}
ADDITIVE = {Metric.COST_USD, Metric.REQUESTS, Metric.RATE_LIMITED_REQUESTS}
# The lowest remaining/limit of the rate-limit headers: bad when it drops, like the cache hit rate.
HEADROOM = {
    Metric.RATELIMIT_REQUESTS_HEADROOM_MIN,
    Metric.RATELIMIT_INPUT_TOKENS_HEADROOM_MIN,
    Metric.RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN,
}
LOWER_IS_WORSE = {Metric.CACHE_HIT_RATE, *HEADROOM, Metric.COVERAGE}
# Judged on the provider's reconciliation (providers.selectors), per closed UTC day, not on rollups.
PROVIDER = {Metric.COVERAGE, Metric.UNMETERED_COST_USD}
# How far back a day may be the "latest day read": the sync reads hourly, so a week means it is broken.
PROVIDER_LOOKBACK_DAYS = 7
# Smallest deviation an anomaly must exceed, whatever the MAD: a flat series (MAD 0) must not
# page on a change nobody would care about.
ANOMALY_FLOOR: dict[str, float] = {
    Metric.COST_USD: 0.05,
    Metric.REQUESTS: 10.0,
    Metric.ERROR_RATE: 0.02,
    Metric.LATENCY_P95_MS: 50.0,
    Metric.LATENCY_AVG_MS: 25.0,
    Metric.CACHE_HIT_RATE: 0.05,
    Metric.TTFT_P95_MS: 25.0,
    Metric.RATE_LIMITED_REQUESTS: 5.0,
    **dict.fromkeys(HEADROOM, 0.05),
}
ANOMALY_RELATIVE_FLOOR = 0.10  # and at least 10% of the baseline median
MIN_HISTORY = 7  # of the 14 baseline windows, at least this many must have data
BASELINE_WINDOWS = 14


def window_start(window: str, at: datetime) -> datetime:
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if window == "day" else at


def window_length(window: str) -> timedelta:
    return timedelta(days=1) if window == "day" else timedelta(hours=1)


def metric_value(row: MetricsRow, metric: str) -> float:
    d = row.as_dict()
    if metric in HEADROOM and d[metric] is None:
        return 1.0  # no call reported its limits: nothing says the window was near one
    return float(d[metric] or 0.0)  # None: no call reported it (TTFT); such a window has no requests to judge


def metric_requests(row: MetricsRow, metric: str) -> int:
    """The calls a window's value is measured on (the volume guard counts these)."""
    if metric in LATENCY:
        return row.online_requests
    if metric == Metric.TTFT_P95_MS:
        return row.ttft_requests
    return row.requests


def rule_filters(rule: AlertRule) -> dict[str, list[str]]:
    filters = {}
    for name in ("environment", "service", "model"):
        value = getattr(rule, name)
        if value:
            filters[name] = [value]
    return filters


def _query(
    rule: AlertRule, start: datetime, end: datetime, granularity: str, group_by: list[str] | None = None
) -> list[MetricsRow]:
    return metrics_query(
        MetricsQuery(
            project_ids=[rule.project_id],
            start=start,
            end=end,
            granularity=granularity,
            group_by=group_by or [],
            filters=rule_filters(rule),
        )
    ).series


@dataclass
class WindowValue:
    start: datetime
    requests: int
    value: float
    row: MetricsRow


def rule_windows(rule: AlertRule, *, now: datetime, count: int) -> list[WindowValue]:
    """The last `count` windows up to and including the current (partial) one, oldest first."""
    length = window_length(rule.window)
    current = window_start(rule.window, now)
    start = current - length * (count - 1)
    rows = _query(rule, start, current + length, rule.window)
    # A bucketed query's rows have a bucket (only a TOTAL query's is None).
    return [
        WindowValue(
            start=r.bucket,  # type: ignore[arg-type]
            requests=metric_requests(r, rule.metric),
            value=metric_value(r, rule.metric),
            row=r,
        )
        for r in rows
    ]


@dataclass
class ProviderDay:
    """The latest closed UTC day the provider's report has been read for, reconciled."""

    day: datetime  # midnight UTC
    result: Reconciliation
    metric: str

    @property
    def value(self) -> float | None:
        if self.metric == Metric.COVERAGE:
            return self.result.coverage  # None: the provider reports no cost, nothing to cover
        return float(self.result.unmetered_cost_usd)

    def window(self) -> WindowValue | None:
        value = self.value
        if value is None:
            return None
        requests = sum(r.provider.requests for r in self.result.rows)
        return WindowValue(start=self.day, requests=requests, value=value, row=MetricsRow(bucket=self.day, group={}))

    def detail(self) -> dict[str, Any]:
        """What the email prints: the day's totals and the models with spend Tally did not see."""
        return {
            "provider": {
                "provider_cost_usd": float(self.result.provider_cost_usd),
                "tally_cost_usd": float(self.result.tally_cost_usd),
                "unmetered_cost_usd": float(self.result.unmetered_cost_usd),
                "coverage": self.result.coverage,
                "unmetered_models": [{"model": m, "cost_usd": float(c)} for m, c in self.result.unmetered_models],
            }
        }


def provider_day(rule: AlertRule, *, now: datetime) -> ProviderDay | None:
    """The rule's project's latest closed UTC day whose provider report has been read (within
    PROVIDER_LOOKBACK_DAYS); None when there is none: no reading, no judgement. The current day
    is never judged: both sides are still filling in, and a lagging report would be a false alarm."""
    today = window_start("day", now).date()
    last = today - timedelta(days=1)
    result = reconciliation(
        project_id=rule.project_id, start=last - timedelta(days=PROVIDER_LOOKBACK_DAYS - 1), end=last
    )
    conn = result.connection
    if conn is None or conn.covered_from is None or conn.covered_to is None:
        return None
    day = min(last, conn.covered_to)
    if day < conn.covered_from or day < result.start:
        return None
    rows = [r for r in result.rows if r.day == day]
    return ProviderDay(
        day=datetime(day.year, day.month, day.day, tzinfo=UTC),
        metric=rule.metric,
        result=Reconciliation(start=day, end=day, connection=conn, rows=rows),
    )


@dataclass
class Baseline:
    median: float
    mad: float
    points: int
    scale: float
    values: list[float] = field(default_factory=list)


def baseline_for(rule: AlertRule, windows: list[WindowValue], target: WindowValue) -> Baseline | None:
    """Median and MAD of the trailing like windows: for hourly rules the same hour on each of
    the last 14 days (so a daily cycle is not an anomaly), for daily rules the last 14 days."""
    step = timedelta(days=1)
    wanted = {target.start - step * k for k in range(1, BASELINE_WINDOWS + 1)}
    history = [w for w in windows if w.start in wanted]
    if rule.metric in GUARDED:
        history = [w for w in history if w.requests >= rule.min_requests]
    else:
        history = [w for w in history if w.requests > 0]
    if len(history) < MIN_HISTORY:
        return None
    values = [w.value for w in history]
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    scale = max(1.4826 * mad, ANOMALY_FLOOR[rule.metric], ANOMALY_RELATIVE_FLOOR * abs(median))
    return Baseline(median=median, mad=mad, points=len(values), scale=scale, values=values)


TOP_VALUES = 3  # per dimension, by share of the window
GONE_VALUES = 2  # and the biggest movers that had calls a day earlier but none in the window
DIMENSIONS = ("model", "service", "feature")


@dataclass
class Contributor:
    """One value of a dimension in the breaching window: its own metric value, its share of the
    window (spend, requests or errors; of requests for latencies and cache hit rate) and, when
    the like window a day earlier had calls, its value then and its part in the change."""

    dimension: str
    value: str
    now: float
    share: float
    before: float | None = None
    change: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "value": self.value,
            "now": self.now,
            "share": self.share,
            "before": self.before,
            "change": self.change,
        }


@dataclass
class ErrorCount:
    kind: str  # "type" (error_type) or "status" (HTTP status)
    value: str
    count: int
    share: float  # of the window's errors
    before: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "count": self.count, "share": self.share, "before": self.before}


@dataclass
class Explanation:
    contributors: list[Contributor]
    errors: list[ErrorCount]
    compared: bool  # the window a day earlier had calls, so changes are given

    def as_detail(self) -> dict[str, Any]:
        return {
            "contributors": [c.as_dict() for c in self.contributors],
            "errors": [e.as_dict() for e in self.errors],
            "compared": self.compared,
        }


def contributors(
    rule: AlertRule, *, start: datetime, end: datetime, before_start: datetime, before_end: datetime
) -> Explanation:
    """Where the window's value came from, per model / service / feature, and how it moved.

    Always: the top values of each dimension by share of the window ("claude-opus-4-7 $8.00,
    100%"), even a lone value, since "all of it is Opus from checkout" is the explanation.
    When the window a day earlier had calls, each value also carries its change. For sums
    (spend, requests) that is its own change; for ratios its share of the overall change
    (its errors over all requests), so the contributions add up to the total move; for P95
    its own P95 change weighted by its share of requests. Error-rate rules also get the
    error types and HTTP statuses of the window's errors.
    """
    granularity = "day" if rule.window == "day" else "hour"
    now_rows = _query(rule, start, end, granularity, list(DIMENSIONS))
    before_rows = _query(rule, before_start, before_end, granularity, list(DIMENSIONS))
    compared = any(r.requests for r in before_rows)
    found: list[Contributor] = []
    for dimension in DIMENSIONS:
        if getattr(rule, dimension, None):
            continue  # the rule is scoped to one value: it cannot explain anything
        now_by = _by_value(now_rows, dimension)
        before_by = _by_value(before_rows, dimension) if compared else {}
        if set(now_by) | set(before_by) <= {""}:
            continue  # never set (e.g. no feature instrumented): "(none), 100%" would say nothing
        found += _dimension_contributors(rule.metric, dimension, now_by, before_by, compared)
    errors = (
        _error_counts(rule, start, end, before_start, before_end, compared) if rule.metric == Metric.ERROR_RATE else []
    )
    return Explanation(contributors=found, errors=errors, compared=compared)


def _dimension_contributors(
    metric: str, dimension: str, now_by: dict[str, MetricsRow], before_by: dict[str, MetricsRow], compared: bool
) -> list[Contributor]:
    # Latency is judged on online calls only (batch results are not in it): so are their shares.
    calls = _online if metric in (Metric.LATENCY_AVG_MS, Metric.LATENCY_P95_MS) else (lambda r: r.requests)
    total_now = sum(calls(r) for r in now_by.values()) or 1
    total_before = sum(calls(r) for r in before_by.values()) or 1
    weights = {value: _weight(metric, row) for value, row in now_by.items()}
    total_weight = sum(weights.values())
    out = []
    for value in set(now_by) | set(before_by):
        a = now_by.get(value) or MetricsRow(bucket=None, group={})
        b = before_by.get(value) or MetricsRow(bucket=None, group={})
        now_v, before_v, change = _contribution(metric, a, b, total_now, total_before)
        share = weights.get(value, 0.0) / total_weight if total_weight else 0.0
        out.append(
            Contributor(
                dimension, value or "(none)", now_v, share, before_v if compared else None, change if compared else None
            )
        )
    present = sorted((c for c in out if c.share > 0), key=lambda c: (-c.share, c.value))[:TOP_VALUES]
    gone = sorted((c for c in out if c.share == 0 and c.change), key=lambda c: (-abs(c.change or 0), c.value))
    return present + gone[:GONE_VALUES]


def _weight(metric: str, row: MetricsRow) -> float:
    """What a value's share is a share of: the sum itself, the errors, or the requests."""
    if metric == Metric.COST_USD:
        return float(row.cost_usd)
    if metric == Metric.ERROR_RATE:
        return float(row.sums.get("errors", 0))
    if metric in (Metric.LATENCY_AVG_MS, Metric.LATENCY_P95_MS):
        return float(_online(row))
    return float(row.requests)


def _online(row: MetricsRow) -> int:
    return row.online_requests


def _by_value(rows: list[MetricsRow], dimension: str) -> dict[str, MetricsRow]:
    out: dict[str, MetricsRow] = {}
    for row in rows:
        key = row.group[dimension]
        out.setdefault(key, MetricsRow(bucket=None, group={})).add(row)
    return out


def _contribution(
    metric: str, a: MetricsRow, b: MetricsRow, total_now: int, total_before: int
) -> tuple[float, float, float]:
    ad, bd = a.as_dict(), b.as_dict()
    ad[metric], bd[metric] = ad[metric] or 0.0, bd[metric] or 0.0  # TTFT is None where no call reported it
    if metric in ADDITIVE:
        return ad[metric], bd[metric], ad[metric] - bd[metric]
    if metric == Metric.ERROR_RATE:
        return ad[metric], bd[metric], ad["errors"] / total_now - bd["errors"] / total_before
    if metric == Metric.CACHE_HIT_RATE:
        return ad[metric], bd[metric], ad["cache_hits"] / total_now - bd["cache_hits"] / total_before
    if metric == Metric.LATENCY_AVG_MS:
        return ad[metric], bd[metric], a.latency_sum_ms / total_now - b.latency_sum_ms / total_before
    share = (_online(a) if metric == Metric.LATENCY_P95_MS else a.requests) / total_now
    return ad[metric], bd[metric], (ad[metric] - bd[metric]) * share if a.requests and b.requests else 0.0


def _error_maps(rule: AlertRule, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """Errors per type and per HTTP status in [start, end) and the rule's scope, from the hourly
    aggregates' jsonb maps (the same maps the Errors page reads), summed over the window's hours."""
    hours = [start + timedelta(hours=i) for i in range(int((end - start) / timedelta(hours=1)))]
    maps = error_maps(
        MetricsQuery(
            project_ids=[rule.project_id], start=start, end=end, granularity="hour", filters=rule_filters(rule)
        ),
        hours,
    )
    return {kind: {key: sum(counts) for key, counts in by_key.items()} for kind, by_key in maps.items()}


def _error_counts(
    rule: AlertRule, start: datetime, end: datetime, before_start: datetime, before_end: datetime, compared: bool
) -> list[ErrorCount]:
    now = _error_maps(rule, start, end)
    before = _error_maps(rule, before_start, before_end) if compared else {"type": {}, "status": {}}
    found = []
    for kind in ("type", "status"):
        total = sum(now[kind].values())
        ranked = sorted(now[kind].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
        found += [
            ErrorCount(kind, key, count, count / total, before[kind].get(key, 0) if compared else None)
            for key, count in ranked
        ]
    return found


# --- budgets ---------------------------------------------------------------------------


PACE_DAYS = 7  # the forecast's pace: the median daily spend of the 7 UTC days before today


def _day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


@dataclass
class BudgetStatus:
    budget: Budget
    period_start: datetime
    period_end: datetime
    spent_usd: Decimal
    projected_usd: Decimal
    # The forecast (budget_forecast): the pace and the days it is the median of, and the UTC date
    # the limit is reached at that pace (None: not within this period).
    daily_pace_usd: Decimal = Decimal(0)
    pace_first_day: date | None = None
    pace_last_day: date | None = None
    forecast_exhausted_on: date | None = None

    @property
    def exceeded(self) -> bool:
        return self.spent_usd >= self.budget.limit_usd

    @property
    def used_fraction(self) -> float:
        return float(self.spent_usd / self.budget.limit_usd) if self.budget.limit_usd else 0.0

    @property
    def forecast_warns(self) -> bool:
        """The forecast warning applies: the limit is not reached yet, but will be before the period ends."""
        return self.forecast_exhausted_on is not None and not self.exceeded

    @property
    def pace_days_label(self) -> str:
        if self.pace_first_day is None or self.pace_last_day is None:
            return ""
        return f"{_day_label(self.pace_first_day)} – {_day_label(self.pace_last_day)}"

    @property
    def pace_display(self) -> str:
        return f"{usd(self.daily_pace_usd)}/day"

    @property
    def forecast_display(self) -> str:
        """The forecast in the words the budgets page and the warning email use."""
        basis = f"at {self.pace_display} (median of {self.pace_days_label})"
        if self.exceeded:
            return "limit reached"
        if self.forecast_exhausted_on is not None:
            return f"runs out {_day_label(self.forecast_exhausted_on)} {basis}"
        if self.daily_pace_usd <= 0:
            return f"no forecast: no spend on a typical day of {self.pace_days_label}"
        return f"lasts the period {basis}"

    def as_dict(self) -> dict[str, Any]:
        b = self.budget
        return {
            "id": b.pk,
            "name": b.name,
            "period": b.period,
            "scope": {"environment": b.environment or None, "service": b.service or None, "user_id": b.user_id or None},
            "period_start": self.period_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "period_end": self.period_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "limit_usd": float(b.limit_usd),
            "spent_usd": float(self.spent_usd),
            "projected_usd": float(self.projected_usd),
            "used": round(self.used_fraction, 6),
            "exceeded": self.exceeded,
            "daily_pace_usd": float(self.daily_pace_usd),
            "forecast_exhausted_on": self.forecast_exhausted_on.isoformat() if self.forecast_exhausted_on else None,
        }


def budget_period(period: str, now: datetime) -> tuple[datetime, datetime]:
    now = now.astimezone(UTC)
    if period == Budget.Period.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days)


def budget_forecast(
    *, limit_usd: Decimal, spent_usd: Decimal, daily_spends: list[Decimal], now: datetime, period_end: datetime
) -> tuple[Decimal, date | None]:
    """(daily pace, the UTC date the limit is reached at that pace, or None).

    Pure, so it is tested with exact dates. The pace is the median of `daily_spends` (the budget's
    spend on each of the 7 UTC days before today, 0 for a day without calls): the median, not the
    mean, so one unusual day neither hides nor fakes a trend. From `now` on, spend is assumed to
    grow at that pace on top of `spent_usd`; the limit is reached at now + (limit - spent) / pace
    days, and its UTC date is the answer. None when the pace is 0 or that moment is at or after
    `period_end` (the spend resets first). A budget already at its limit gives today.
    """
    pace = Decimal(statistics.median(daily_spends)) if daily_spends else Decimal(0)
    today = now.astimezone(UTC).date()
    if spent_usd >= limit_usd:
        return pace, today
    if pace <= 0:
        return pace, None
    days_left = float((limit_usd - spent_usd) / pace)
    if days_left >= (period_end - now).total_seconds() / 86400:  # also keeps a huge days_left out of timedelta
        return pace, None
    return pace, (now + timedelta(days=days_left)).astimezone(UTC).date()


def _budget_filters(budget: Budget) -> dict[str, list[str]]:
    filters = {}
    if budget.environment:
        filters["environment"] = [budget.environment]
    if budget.service:
        filters["service"] = [budget.service]
    return filters


def _user_spend_by_day(budget: Budget, first: date, end: date) -> dict[date, Decimal]:
    """Per-user spend per UTC day in [first, end), from the daily per-user rows."""
    rows = user_spend_by_day(
        project_id=budget.project_id,
        user_id=budget.user_id,
        first_day=first,
        last_day=end - timedelta(days=1),
        environment=budget.environment or None,
    )
    return {day: Decimal(row["cost"]) for day, row in rows.items()}


def _spent(budget: Budget, start: datetime, end: datetime) -> Decimal:
    if budget.user_id:
        # Per-user spend comes from the daily per-user rows (today's is current after each pass).
        last = end.date() if end.time() == end.min.time() else end.date() + timedelta(days=1)
        return sum(_user_spend_by_day(budget, start.date(), last).values(), Decimal(0))
    result = metrics_query(
        MetricsQuery(
            project_ids=[budget.project_id],
            start=start,
            end=end,
            granularity="hour" if end - start <= timedelta(days=1) else "day",
            filters=_budget_filters(budget),
        )
    )
    return result.totals.cost_usd


def _daily_spends(budget: Budget, first: date, days: int) -> list[Decimal]:
    """The budget's spend on each of `days` UTC days from `first`, 0 for a day without calls."""
    end = first + timedelta(days=days)
    if budget.user_id:
        by_day = _user_spend_by_day(budget, first, end)
    else:
        start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
        result = metrics_query(
            MetricsQuery(
                project_ids=[budget.project_id],
                start=start,
                end=start + timedelta(days=days),
                granularity="day",
                filters=_budget_filters(budget),
            ),
            with_as_of=False,
        )
        by_day = {row.bucket.date(): row.cost_usd for row in result.series if row.bucket is not None}
    return [by_day.get(first + timedelta(days=i), Decimal(0)) for i in range(days)]


def budget_status(budget: Budget, *, now: datetime) -> BudgetStatus:
    start, end = budget_period(budget.period, now)
    upto = min(end, window_start("hour", now) + timedelta(hours=1))
    spent = _spent(budget, start, upto)
    elapsed = max((now - start).total_seconds(), 3600.0)  # at least an hour: no wild early projections
    projected = spent * Decimal((end - start).total_seconds() / elapsed) if spent else Decimal(0)
    first_pace_day = now.astimezone(UTC).date() - timedelta(days=PACE_DAYS)
    pace, exhausted_on = budget_forecast(
        limit_usd=budget.limit_usd,
        spent_usd=spent,
        daily_spends=_daily_spends(budget, first_pace_day, PACE_DAYS),
        now=now,
        period_end=end,
    )
    return BudgetStatus(
        budget=budget,
        period_start=start,
        period_end=end,
        spent_usd=spent,
        projected_usd=max(projected, spent).quantize(Decimal("0.000001")),
        daily_pace_usd=pace.quantize(Decimal("0.000001")),
        pace_first_day=first_pace_day,
        pace_last_day=first_pace_day + timedelta(days=PACE_DAYS - 1),
        forecast_exhausted_on=exhausted_on,
    )


def budgets_status(
    *,
    project_ids: list[int],
    now: datetime,
    service: str | None = None,
    user_id: str | None = None,
    environment: str | None = None,
) -> list[BudgetStatus]:
    budgets = Budget.objects.filter(project_id__in=project_ids, enabled=True)
    if environment is not None:
        budgets = budgets.filter(environment__in=["", environment])
    if service or user_id:
        # Scoped (a client asking "may I call?"): project-wide budgets plus its own.
        budgets = budgets.filter(service__in=["", service or ""], user_id__in=["", user_id or ""])
    return [budget_status(b, now=now) for b in budgets]


# --- the alerts pages ------------------------------------------------------------------

HISTORY_LIMIT = 200
OUTBOX_LIMIT = 200
FILE_EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"


@dataclass
class UiScope:
    """The project an alerts page is about, chosen among those the user may see."""

    projects: list[Project]
    project: Project | None
    is_admin: bool
    notes: list[str] = field(default_factory=list)

    # The dashboard nav reads `filters.querystring` / `filters.project_slug`: keep the project.
    @property
    def project_slug(self) -> str:
        return self.project.slug if self.project else ""

    @property
    def querystring(self) -> str:
        return f"project={self.project.slug}" if self.project else ""


def ui_scope(*, user: RequestUser, project_slug: str | None, strict: bool = False) -> UiScope:
    """`project_slug` among the user's visible projects, else the first of them by slug.

    strict (pages that write): a slug the user cannot see is None, never another project, so
    a form can't land in a project other than the one its URL names.
    """
    projects = list(visible_projects(user).order_by("slug"))
    project = next((p for p in projects if p.slug == project_slug), None)
    notes = []
    if project is None and project_slug and not strict:
        notes.append(f"No project {project_slug!r} among yours; showing another one.")
    if project is None and projects and not (strict and project_slug):
        project = projects[0]
    is_admin = project is not None and is_project_admin(user, project)
    return UiScope(projects=projects, project=project, is_admin=is_admin, notes=notes)


def threshold_display(rule: AlertRule) -> str:
    if rule.condition == Condition.ANOMALY:
        return f"{rule.sensitivity or 3.0:g} σ"
    return format_metric(rule.metric, rule.threshold)


def scope_display(
    *, environment: str | None, service: str | None, model: str | None = None, user_id: str | None = None
) -> str:
    parts = [
        f"{name} {value}"
        for name, value in (("env", environment), ("service", service), ("model", model), ("user", user_id))
        if value
    ]
    return " · ".join(parts) or "whole project"


@dataclass
class RuleRow:
    rule: AlertRule
    metric_label: str
    threshold: str
    scope: str
    open_incident: Incident | None
    open_count: int = 0  # a rule with `per` has an open incident per breaching value


def rules_list(*, project_id: int) -> list[RuleRow]:
    """Every rule of the project with its open incident, if any (two queries whatever the count)."""
    rules = AlertRule.objects.filter(project_id=project_id).prefetch_related(
        Prefetch("incidents", queryset=Incident.objects.filter(resolved_at__isnull=True), to_attr="open_incidents")
    )
    return [
        RuleRow(
            rule=r,
            metric_label=METRIC_LABELS[Metric(r.metric)],
            threshold=threshold_display(r),
            scope=scope_display(environment=r.environment, service=r.service, model=r.model)
            + (f" · per {r.get_per_display()}" if r.per else ""),
            open_incident=next(iter(r.open_incidents), None),
            open_count=len(r.open_incidents),
        )
        for r in rules
    ]


def duration_display(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclass
class IncidentRow:
    incident: Incident
    window_end: datetime
    duration: str
    value: str
    compared: str
    contributors: list[dict[str, Any]]
    error_counts: list[dict[str, Any]]
    no_baseline: bool
    dashboard_link: str
    calls_link: str
    notification: Notification | None
    provider: dict[str, Any] | None = None  # provider metrics: the day's reconciliation (formatting.provider_display)


def rule_history(*, rule: AlertRule, now: datetime) -> list[IncidentRow]:
    """The rule's incidents, newest first, with the numbers and the "opened" email of each."""
    incidents = Incident.objects.filter(rule=rule).prefetch_related(
        Prefetch(
            "notification_set",
            queryset=Notification.objects.filter(kind=Notification.Kind.INCIDENT_OPENED),
            to_attr="opened_emails",
        )
    )[:HISTORY_LIMIT]
    rows = []
    for incident in incidents:
        if incident.baseline is not None:
            compared = f"baseline {format_metric(rule.metric, incident.baseline)}"
        elif incident.threshold is not None:
            compared = f"threshold {format_metric(rule.metric, incident.threshold)}"
        else:
            compared = "—"
        explained = explanation_display(rule.metric, incident.detail)
        links = incident_links(incident, now=now, absolute=False)
        rows.append(
            IncidentRow(
                incident=incident,
                window_end=incident_window(incident, now=now)[1],
                duration=duration_display((incident.resolved_at or now) - incident.opened_at),
                value=format_metric(rule.metric, incident.value),
                compared=compared,
                contributors=explained["contributors"],
                error_counts=explained["error_counts"],
                no_baseline=explained["no_baseline"],
                dashboard_link=links["dashboard"],
                calls_link=links["calls"],
                notification=next(iter(incident.opened_emails), None),
                provider=provider_display((incident.detail or {}).get("provider")),
            )
        )
    _per_notifications(rows)
    return rows


def _per_notifications(rows: list[IncidentRow]) -> None:
    """A per-dimension pass sends one message for all the values it opened, attached to the worst
    one; the others name its key in `detail["notification_key"]` (alerts/per_rules.py): one query."""
    keys = {row.incident.detail.get("notification_key") for row in rows if row.notification is None}
    keys.discard(None)
    if not keys:
        return
    by_key = {n.dedupe_key: n for n in Notification.objects.filter(dedupe_key__in=keys)}
    for row in rows:
        if row.notification is None:
            row.notification = by_key.get(row.incident.detail.get("notification_key", ""))


@dataclass
class BudgetRow:
    budget: Budget
    scope: str
    status: BudgetStatus | None  # None: disabled, not tracked

    @property
    def period_label(self) -> str:
        """The current period with its last day (period_end itself is exclusive): "Nov 1 – Nov 30"."""
        if self.status is None:
            return ""
        first, last = self.status.period_start, self.status.period_end - timedelta(days=1)
        return f"{first:%b} {first.day}" if first == last else f"{first:%b} {first.day} – {last:%b} {last.day}"

    @property
    def level(self) -> str:
        if self.status is None:
            return "disabled"
        if self.status.exceeded:
            return "exceeded"
        return "warn" if self.status.used_fraction >= 0.8 else "ok"


def budgets_list(*, project_id: int, now: datetime) -> list[BudgetRow]:
    statuses = {s.budget.pk: s for s in budgets_status(project_ids=[project_id], now=now)}
    return [
        BudgetRow(
            budget=b,
            status=statuses.get(b.pk),
            scope=scope_display(environment=b.environment, service=b.service, user_id=b.user_id),
        )
        for b in Budget.objects.filter(project_id=project_id)
    ]


def digest_subscription(*, project_id: int) -> DigestSubscription | None:
    """The project's digest as the page manages it: its earliest subscription."""
    return DigestSubscription.objects.filter(project_id=project_id).order_by("pk").first()


def project_channels(*, project_id: int) -> list[str]:
    """The project's own channels (Fernet tokens): the digest's, and its page's test message."""
    found = ProjectChannels.objects.filter(project_id=project_id).values_list("channels_encrypted", flat=True).first()
    return list(found or [])


def notification_queued(*, dedupe_key: str) -> bool:
    """Any row of that notification: its email, or (with no recipients) one of its channels."""
    return Notification.objects.filter(
        Q(dedupe_key=dedupe_key) | Q(dedupe_key__startswith=f"{dedupe_key}:channel:")
    ).exists()


@dataclass
class Outbox:
    notifications: list[Notification]
    counts: dict[str, int]
    mail_path: str | None  # where the file backend keeps mail, when it is the backend


def outbox(*, project_id: int) -> Outbox:
    rows = list(Notification.objects.filter(project_id=project_id).defer("body_text", "body_html")[:OUTBOX_LIMIT])
    counts = {"sent": 0, "failed": 0, "retrying": 0, "pending": 0}
    for row in rows:
        counts[row.status] += 1
    return Outbox(notifications=rows, counts=counts, mail_path=mail_file_path())


def mail_file_path() -> str | None:
    if settings.EMAIL_BACKEND != FILE_EMAIL_BACKEND:
        return None
    return str(getattr(settings, "EMAIL_FILE_PATH", "") or "") or None


# --- what the dashboard draws on its charts (thresholds, anomaly bands, incidents, budgets) ---


@dataclass
class ChartRule:
    """An enabled rule whose scope is exactly the page's filters, so the chart shows what it judges.
    `band`: for an anomaly rule, per window of [start, end), (window start, low, high) where the
    baseline has enough history (median ± sensitivity x robust scale, as the evaluator judges)."""

    rule: AlertRule
    band: list[tuple[datetime, float, float]] = field(default_factory=list)


@dataclass
class ChartIncident:
    incident: Incident
    rule: AlertRule
    start: datetime  # the first breaching window's start
    end: datetime  # resolved_at, or now while open


@dataclass
class ChartAlerts:
    rules: list[ChartRule] = field(default_factory=list)
    incidents: list[ChartIncident] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)


def chart_alerts(
    *,
    project_id: int,
    start: datetime,
    end: datetime,
    now: datetime,
    band_window: str | None = None,
    environment: str = "",
    service: str = "",
    model: str = "",
    feature: str = "",
    user_id: str = "",
) -> ChartAlerts:
    """The rules, incidents and budgets a dashboard chart of [start, end) under these filters draws.

    A rule is in scope when its environment/service/model scope equals the page's filters: a
    project-wide threshold on a chart of one service would compare different quantities. Rules
    have no feature or user scope, so a page filtered by either draws none; nor are rules with
    `per` drawn (their threshold is each value's, not the chart's total). Anomaly bands are
    computed for rules judged per `band_window` (the chart's bucket) only: a band is per window.
    Budgets: enabled ones whose environment, service and user_id equal the filters (feature: none).
    """
    out = ChartAlerts()
    if not feature:
        budgets = Budget.objects.filter(
            project_id=project_id, enabled=True, environment=environment, service=service, user_id=user_id
        )
        out.budgets = list(budgets.order_by("limit_usd", "pk"))
    if feature or user_id:
        return out
    scope = {
        name: value or None for name, value in (("environment", environment), ("service", service), ("model", model))
    }
    # A rule with `per` judges each user / service / ... alone: its threshold is not a line on a total.
    rules = list(
        AlertRule.objects.filter(project_id=project_id, enabled=True, per__isnull=True, **scope).order_by("name", "pk")
    )
    for rule in rules:
        chart_rule = ChartRule(rule=rule)
        if rule.condition == Condition.ANOMALY and rule.window == band_window:
            chart_rule.band = _anomaly_band(rule, start=start, end=min(end, now + timedelta(hours=1)))
        out.rules.append(chart_rule)
    incidents = Incident.objects.filter(rule__in=rules, window_start__lt=end).exclude(resolved_at__lt=start)
    out.incidents = [
        ChartIncident(incident=i, rule=i.rule, start=i.window_start, end=i.resolved_at or now)
        for i in incidents.select_related("rule").order_by("window_start", "pk")
    ]
    return out


def _anomaly_band(rule: AlertRule, *, start: datetime, end: datetime) -> list[tuple[datetime, float, float]]:
    """One metrics call over the range plus the 14 windows of history the first window needs."""
    first = window_start(rule.window, start)
    if first >= end:
        return []
    history_start = first - timedelta(days=BASELINE_WINDOWS)
    # A bucketed query's rows have a bucket (only a TOTAL query's is None).
    windows = [
        WindowValue(start=r.bucket, requests=r.requests, value=metric_value(r, rule.metric), row=r)  # type: ignore[arg-type]
        for r in _query(rule, history_start, end, rule.window)
    ]
    sensitivity = rule.sensitivity or 3.0
    band = []
    for target in windows:
        if not first <= target.start < end:
            continue
        baseline = baseline_for(rule, windows, target)
        if baseline is not None:
            band.append(
                (
                    target.start,
                    baseline.median - sensitivity * baseline.scale,
                    baseline.median + sensitivity * baseline.scale,
                )
            )
    return band


def incident_latest(*, project_slug: str, metric: str, window: str) -> Incident | None:
    """The latest incident of the project's rules on `metric` per `window` (make screenshots)."""
    return (
        Incident.objects.filter(rule__project__slug=project_slug, rule__metric=metric, rule__window=window)
        .order_by("-window_start")
        .first()
    )


# --- per-dimension rules (CONTRACT §5 `per`) ---------------------------------------------

# Per user, only what the per-user daily spend rows hold (requests, errors, spend), per UTC day.
PER_USER_METRICS = tuple(USER_RULE_METRICS)
# Per service / feature / model: everything the aggregates hold; the provider's report has no dimensions.
PER_DIMENSION_METRICS = tuple(m for m in Metric.values if m not in PROVIDER)


def per_problem(
    *, per: str, metric: str | None, window: str | None, condition: str | None, scope: dict[str, str | None]
) -> str | None:
    """Why a rule cannot be judged per `per` (the message of a 400 on the field `per`), or None.

    Per user: the per-user daily spend rows hold requests, errors and spend per UTC day and
    environment only. Anomaly is refused for every `per`: a baseline per value would need 14
    windows of history for each of up to 100k values on every pass, which is not cheap."""
    if condition == Condition.ANOMALY:
        return f"per {per} takes a threshold (above / below), not anomaly: a baseline for every {per} value is not kept"
    if per == Per.USER_ID:
        if metric and metric not in PER_USER_METRICS:
            return (
                f"per user_id can judge {', '.join(PER_USER_METRICS)} only (per-user numbers are daily "
                f"spend rows), not {metric}"
            )
        if window and window != "day":
            return f"per user_id is judged per UTC day: the window must be day, not {window}"
        scoped = [name for name in ("service", "model") if scope.get(name)]
        if scoped:
            return (
                f"per user_id can be scoped to an environment only (per-user numbers are not kept per "
                f"{' or '.join(scoped)})"
            )
        return None
    if metric in PROVIDER:
        return f"{metric} is the provider's figure for the whole project: it cannot be judged per {per}"
    if scope.get(per):
        return f"a rule per {per} cannot also be scoped to one {per} ({scope[per]}): drop one of them"
    return None


@dataclass
class PerValue:
    """One value of the rule's `per` dimension that breaches, in its latest breaching window."""

    dimension_value: str
    window_start: datetime
    value: float
    requests: int


def _partial_conclusive(rule: AlertRule) -> bool:
    """Whether the current, unfinished window can already prove a breach (as windows_judge):
    a sum above its threshold only grows; a guarded rate is judged once it has its requests."""
    return (rule.metric in ADDITIVE and rule.condition == Condition.ABOVE) or rule.metric in GUARDED


def per_breaching(rule: AlertRule, *, now: datetime) -> list[PerValue]:
    """The values of `rule.per` that breach now, worst first: judged on the last closed window and,
    where a partial window is conclusive, the current one (the later breaching window wins, as for
    a whole-scope rule). Per user, one grouped query whose HAVING does the judging (never a row per
    user); per service / feature / model, one grouped metrics query (a few hundred values at most)."""
    assert rule.per
    assert rule.threshold is not None
    length = window_length(rule.window)
    current = window_start(rule.window, now)
    starts = [current - length, *([current] if _partial_conclusive(rule) else [])]
    above = rule.condition == Condition.ABOVE
    guard = rule.min_requests if rule.metric in GUARDED else 0
    found: dict[str, PerValue] = {}
    if rule.per == Per.USER_ID:
        rows = users_breaching(
            project_id=rule.project_id,
            days=[s.date() for s in starts],
            metric=rule.metric,
            above=above,
            threshold=rule.threshold,
            environment=rule.environment,
            min_requests=guard,
        )
        for r in rows:
            start = datetime(r.day.year, r.day.month, r.day.day, tzinfo=UTC)
            if r.user_id not in found or found[r.user_id].window_start < start:
                found[r.user_id] = PerValue(r.user_id, start, r.value, r.requests)
    else:
        percentiles = rule.metric in (Metric.LATENCY_P95_MS, Metric.TTFT_P95_MS)
        result = metrics_query(
            MetricsQuery(
                project_ids=[rule.project_id],
                start=starts[0],
                end=starts[-1] + length,
                granularity=rule.window,
                group_by=[rule.per],
                filters=rule_filters(rule),
                histograms=percentiles,
                ttft=rule.metric == Metric.TTFT_P95_MS,
            ),
            with_as_of=False,
        )
        for row in result.series:
            value, requests = metric_value(row, rule.metric), metric_requests(row, rule.metric)
            if requests < guard or not (value > rule.threshold if above else value < rule.threshold):
                continue
            name = row.group[rule.per]
            if not name:
                continue  # calls that never named a service / feature are nobody's (as per-user rows skip '')
            if row.bucket is not None and (name not in found or found[name].window_start < row.bucket):
                found[name] = PerValue(name, row.bucket, value, requests)
    return sorted(found.values(), key=lambda p: (-p.value if above else p.value, p.dimension_value))
