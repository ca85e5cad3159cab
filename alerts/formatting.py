"""What an alert says: metric labels and values, the dashboard links of a window, and the
contexts the incident, budget and digest messages are rendered from.

Pure: reads the objects it is given and settings.TALLY_BASE_URL, writes nothing. The read
layer (selectors) and the pages use it as well as the outbox's callers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings

from alerts.models import Incident, Metric
from core import money

METRIC_LABELS: dict[str, str] = {
    Metric.COST_USD: "spend",
    Metric.REQUESTS: "requests",
    Metric.ERROR_RATE: "error rate",
    Metric.LATENCY_P95_MS: "P95 latency",
    Metric.LATENCY_AVG_MS: "average latency",
    Metric.CACHE_HIT_RATE: "cache hit rate",
    Metric.TTFT_P95_MS: "P95 time to first token",
    Metric.RATELIMIT_REQUESTS_HEADROOM_MIN: "rate-limit headroom (requests)",
    Metric.RATELIMIT_INPUT_TOKENS_HEADROOM_MIN: "rate-limit headroom (input tokens)",
    Metric.RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN: "rate-limit headroom (output tokens)",
    Metric.RATE_LIMITED_REQUESTS: "rate-limited calls (429)",
    Metric.COVERAGE: "provider coverage",
    Metric.UNMETERED_COST_USD: "unmetered spend",
}
_PERCENT = (
    Metric.ERROR_RATE,
    Metric.CACHE_HIT_RATE,
    Metric.RATELIMIT_REQUESTS_HEADROOM_MIN,
    Metric.RATELIMIT_INPUT_TOKENS_HEADROOM_MIN,
    Metric.RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN,
    Metric.COVERAGE,
)
_LOWER_IS_WORSE = (Metric.CACHE_HIT_RATE, *_PERCENT[2:])
PROVIDER_METRICS = (Metric.COVERAGE, Metric.UNMETERED_COST_USD)


def usd(value: Decimal | float) -> str:
    """Money as alerts print it, in every email, channel message and page line they make: always
    cents ($0.05, $1,234.50), rounded half up as a bill is ($2.045 is $2.05; core.money)."""
    return money.usd(value, places=2)


def format_metric(metric: str, value: Decimal | float | None) -> str:
    if value is None:
        return "n/a"
    if metric in (
        Metric.LATENCY_P95_MS,
        Metric.LATENCY_AVG_MS,
        Metric.TTFT_P95_MS,
        "latency_p50_ms",
        "latency_p99_ms",
        "ttft_p50_ms",
    ):
        return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"
    if metric in (Metric.COST_USD, Metric.UNMETERED_COST_USD):
        return usd(value)
    if metric in _PERCENT:
        return f"{value * 100:.1f}%"
    return f"{value:,.0f}"


# Agreement 5 (alert email links): the page of the rule's metric. ttft_* (a metric another branch
# adds) goes with the latencies, so a prefix decides rather than the choices list.
METRIC_PAGES: dict[str, str] = {
    Metric.COST_USD: "/spend",
    Metric.REQUESTS: "/",
    Metric.ERROR_RATE: "/errors",
    Metric.CACHE_HIT_RATE: "/cache",
}
ADDITIVE_METRICS = {Metric.COST_USD, Metric.REQUESTS}
# The explorer's order that puts the calls behind the metric first (agreement 2's `sort`).
CALLS_SORT: dict[str, str] = {Metric.COST_USD: "cost"}


def metric_page(metric: str) -> str:
    if metric.startswith(("latency_", "ttft_")):
        return "/latency"
    if metric.startswith("ratelimit_") or metric == "rate_limited_requests":
        return "/errors"  # the Rate limits chart
    return METRIC_PAGES.get(metric, "/")


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def page_url(path: str, params: dict[str, str | None], *, absolute: bool = True) -> str:
    """`path?params`, empty parameters dropped; absolute (TALLY_BASE_URL) for email, relative for pages.
    `:` stays readable (`from=2026-12-03T01:00:00Z`): it is legal in a query string."""
    query = urlencode({k: v for k, v in params.items() if v}, safe=":")
    base = settings.TALLY_BASE_URL.rstrip("/") if absolute else ""
    return f"{base}{path}?{query}" if query else f"{base}{path}"


def _floor(window: str, at: datetime) -> datetime:
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if window == "day" else at


def incident_window(incident: Incident, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The windows that breached, [start, end). Resolution at T means the window closed at
    floor(T) was fine, so the last breaching one ended a window before; an open incident
    (with `now`) runs to the end of the current window; otherwise its first window alone."""
    rule = incident.rule
    length = timedelta(days=1) if rule.window == "day" else timedelta(hours=1)
    start = incident.window_start
    if incident.resolved_at is not None:
        end = _floor(rule.window, incident.resolved_at) - length
    elif now is not None:
        end = _floor(rule.window, now) + length
    else:
        end = start + length
    return start, max(end, start + length)


def _scope_params(rule: Any) -> dict[str, str | None]:
    return {"environment": rule.environment, "service": rule.service, "model": rule.model}


def incident_links(incident: Incident, *, now: datetime | None = None, absolute: bool = True) -> dict[str, str]:
    """The metric's page at the incident's window (day rules: the 7 days ending with its last day,
    so the chart has daily buckets) and "the calls": the explorer on the same window and scope."""
    rule = incident.rule
    start, end = incident_window(incident, now=now)
    chart_start = end - timedelta(days=7) if rule.window == "day" else start
    project = rule.project.slug
    if rule.metric in PROVIDER_METRICS:
        # The Reconciliation page on the incident's days (its `from`/`to` are inclusive dates).
        last = (end - timedelta(days=1)).strftime("%Y-%m-%d")
        dashboard = page_url(
            "/reconciliation", {"project": project, "from": start.strftime("%Y-%m-%d"), "to": last}, absolute=absolute
        )
        calls = page_url("/events", {"project": project, "from": rfc3339(start), "to": rfc3339(end)}, absolute=absolute)
        return {"dashboard": dashboard, "calls": calls}
    dashboard = page_url(
        metric_page(rule.metric),
        {
            "project": project,
            "from": rfc3339(chart_start),
            "to": rfc3339(end),
            **_scope_params(rule),
            **per_params(incident),
        },
        absolute=absolute,
    )
    sort = "latency" if metric_page(rule.metric) == "/latency" else CALLS_SORT.get(rule.metric)
    calls = page_url(
        "/events",
        {
            "project": project,
            "from": rfc3339(start),
            "to": rfc3339(end),
            **_scope_params(rule),
            **per_params(incident),
            "status": "error" if rule.metric == Metric.ERROR_RATE else None,
            "sort": sort,
        },
        absolute=absolute,
    )
    return {"dashboard": dashboard, "calls": calls}


def incident_context(incident: Incident) -> dict[str, Any]:
    rule = incident.rule
    length = timedelta(days=1) if rule.window == "day" else timedelta(hours=1)
    if rule.condition == "anomaly":
        comparison = (
            f"baseline {format_metric(rule.metric, incident.baseline)} (median of the last 14 "
            f"{'days' if rule.window == 'day' else 'like hours'})"
        )
        sign = "<" if rule.metric in _LOWER_IS_WORSE else ">"
        headline_cmp = f"{sign} baseline {format_metric(rule.metric, incident.baseline)}"
    else:
        sign = ">" if rule.condition == "above" else "<"
        comparison = f"threshold {format_metric(rule.metric, incident.threshold)}"
        headline_cmp = f"{sign} {format_metric(rule.metric, incident.threshold)}"
    where = rule.environment or rule.project.slug
    scope = ", ".join(p for p in (rule.model, rule.service) if p)
    headline = f"{METRIC_LABELS[rule.metric]} {format_metric(rule.metric, incident.value)} {headline_cmp}"
    links = incident_links(incident)
    return {
        "rule": rule,
        "incident": incident,
        "where": where,
        "scope": scope,
        "headline": headline,
        "comparison": comparison,
        "value_display": format_metric(rule.metric, incident.value),
        "window_start": incident.window_start,
        "window_end": incident.window_start + length,
        **explanation_display(rule.metric, incident.detail),
        "provider": provider_display((incident.detail or {}).get("provider")),
        "link": links["dashboard"],
        "calls_link": links["calls"],
    }


def provider_display(figures: dict[str, Any] | None) -> dict[str, Any] | None:
    """The day's reconciliation as the email prints it (provider metrics only)."""
    if not figures:
        return None
    return {
        "summary": f"Anthropic billed {format_metric(Metric.COST_USD, figures['provider_cost_usd'])}; "
        f"Tally saw {format_metric(Metric.COST_USD, figures['tally_cost_usd'])}: coverage "
        f"{format_metric(Metric.COVERAGE, figures['coverage'])}, unmetered "
        f"{format_metric(Metric.UNMETERED_COST_USD, figures['unmetered_cost_usd'])}",
        "models": [
            f"{m['model']}: {format_metric(Metric.COST_USD, m['cost_usd'])} unmetered"
            for m in figures.get("unmetered_models", [])
        ],
    }


def _share(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f}%"


def _signed(metric: str, change: float) -> str:
    return ("+" if change >= 0 else "-") + format_metric(metric, abs(change))


def explanation_display(metric: str, detail: dict[str, Any]) -> dict[str, Any]:
    """What the email and the incident page print of `detail` (see selectors.contributors):
    each contributor as "claude-opus-4-7 $8.00, 100%", plus the change a day earlier where
    there was one. Incidents stored before shares existed still show their changes."""
    of = "of errors" if metric == Metric.ERROR_RATE else ("of calls" if metric not in ADDITIVE_METRICS else "")
    contributors = []
    for c in detail.get("contributors", []):
        share = _share(c.get("share"))
        now = format_metric(metric, c["now"])
        line = f"{now}, {share} {of}".strip() if share else now
        # The value's own move ("4.5% a day earlier, +51.2%"), which reads at a glance; `change`
        # (its part in the total move) only ranks the values that vanished.
        moved = None if c.get("before") is None else _signed(metric, c["now"] - c["before"])
        versus = f"{format_metric(metric, c['before'])} a day earlier, {moved}" if moved else ""
        contributors.append(
            {
                **c,
                "now_display": now,
                "share_display": share,
                "line": line,
                "versus": versus,
                "before_display": "" if c.get("before") is None else format_metric(metric, c["before"]),
                "change_display": moved or "",
            }
        )
    errors = []
    for e in detail.get("errors", []):
        label = "error type" if e["kind"] == "type" else "HTTP status"
        line = f"{e['count']:,} call{'' if e['count'] == 1 else 's'}, {_share(e['share'])} of errors"
        versus = "" if e.get("before") is None else f"{e['before']:,} a day earlier"
        errors.append({**e, "label": label, "line": line, "versus": versus, "share_display": _share(e["share"])})
    compared = detail.get("compared")
    return {
        "contributors": contributors,
        "error_counts": errors,
        # None: an incident from before this field; say nothing rather than guess.
        "no_baseline": compared is False,
    }


def budget_context(status: Any, level: int) -> dict[str, Any]:
    b = status.budget
    scope = (
        ", ".join(
            f"{k} {v}" for k, v in (("environment", b.environment), ("service", b.service), ("user", b.user_id)) if v
        )
        or "whole project"
    )
    params = {
        "project": b.project.slug,
        "from": rfc3339(status.period_start),
        "to": rfc3339(status.period_end),
        "environment": b.environment,
        "service": b.service,
        "user": b.user_id,
    }
    return {
        "budget": b,
        "level": level,
        "scope": scope,
        "spent": usd(status.spent_usd),
        "limit": usd(b.limit_usd),
        "projected": usd(status.projected_usd),
        "period_start": status.period_start,
        "period_end": status.period_end,
        "link": page_url("/spend", params),
        # The period's most expensive calls first: what to look at before the limit is reached.
        "calls_link": page_url("/events", {**params, "sort": "cost"}),
    }


def budget_forecast_context(status: Any) -> dict[str, Any]:
    """The forecast warning: `status` is an alerts.selectors.BudgetStatus whose forecast date
    falls before the period ends."""
    context = budget_context(status, 0)
    day = status.forecast_exhausted_on
    context.update(
        {
            "runs_out": f"{day:%b} {day.day}",
            "pace": status.pace_display,
            "pace_days": status.pace_days_label,
            "forecast": status.forecast_display,
            "period_word": status.budget.get_period_display(),
        }
    )
    return context


def model_notice_context(*, project_slug: str, model: str, first: Any, unpriced: bool) -> dict[str, Any]:
    """A new model's (or a model's first unpriced) notice; `first` is rollups' FirstCall."""
    hour_end = first.hour_start + timedelta(hours=1)
    where = " / ".join(part for part in (project_slug, first.environment, first.service) if part)
    return {
        "project": project_slug,
        "model": model,
        "unpriced": unpriced,
        "where": where,
        "environment": first.environment,
        "service": first.service,
        "hour_start": first.hour_start,
        "hour_end": hour_end,
        "calls_link": page_url(
            "/events",
            {"project": project_slug, "model": model, "from": rfc3339(first.hour_start), "to": rfc3339(hour_end)},
        ),
        "prices_link": page_url(f"/projects/{project_slug}/prices", {}),
    }


def digest_link(*, project_slug: str, day: datetime) -> str:
    """The overview over the digest's eight days: yesterday and the week it is compared with."""
    return page_url(
        "/", {"project": project_slug, "from": rfc3339(day - timedelta(days=7)), "to": rfc3339(day + timedelta(days=1))}
    )


# --- per-dimension rules (CONTRACT §5 `per`): one message for the values a pass opened or resolved ---

PER_LISTED = 20  # values named in one message; the rest are "and N more"
PER_NOUNS: dict[str, tuple[str, str]] = {
    "user_id": ("user", "users"),
    "service": ("service", "services"),
    "feature": ("feature", "features"),
    "model": ("model", "models"),
}


def per_params(incident: Incident) -> dict[str, str | None]:
    """The dashboard filter naming a per-dimension incident's value (the dashboard calls user_id `user`)."""
    per = incident.rule.per
    if not per or not incident.dimension_value:
        return {}
    return {"user" if per == "user_id" else per: incident.dimension_value}


def per_when(window: str, start: datetime, now: datetime) -> str:
    """The breaching window in words, as seen at `now` (when the message is composed)."""
    current = _floor(window, now)
    if window == "day":
        if start == current:
            return "today"
        return "yesterday" if start == current - timedelta(days=1) else f"on {start:%b} {start.day}"
    return "this hour" if start == current else f"in the hour from {start.astimezone(UTC):%H:%M} UTC"


def per_value_line(incident: Incident, *, now: datetime) -> str:
    """ "u_4812 spent $6.10 today > $5.00"; "service checkout: error rate 12.0% yesterday > 5.0%"."""
    rule = incident.rule
    assert rule.per is not None
    sign = ">" if rule.condition == "above" else "<"
    value, when = format_metric(rule.metric, incident.value), per_when(rule.window, incident.window_start, now)
    compared = f"{sign} {format_metric(rule.metric, incident.threshold)}"
    if rule.per == "user_id" and rule.metric == Metric.COST_USD:
        return f"{incident.dimension_value} spent {value} {when} {compared}"
    name = incident.dimension_value if rule.per == "user_id" else f"{PER_NOUNS[rule.per][0]} {incident.dimension_value}"
    return f"{name}: {METRIC_LABELS[rule.metric]} {value} {when} {compared}"


def per_context(rule: Any, incidents: list[Incident], *, now: datetime) -> dict[str, Any]:
    """What one per-dimension message prints for the incidents a pass opened or resolved (worst first):
    the first PER_LISTED each with its value and a link to its calls, the rest as "and N more" (with
    their sum for spend and counts, where a sum means something). It is one outbox row per rule and
    pass, keyed by the worst incident: how that keeps the once-per-incident claim is in the
    docstring of alerts/per_rules.py."""
    assert rule.per is not None
    assert incidents
    singular, plural = PER_NOUNS[rule.per]
    listed, rest = incidents[:PER_LISTED], incidents[PER_LISTED:]
    more_total = (
        format_metric(rule.metric, sum(i.value for i in rest))
        if rest and rule.metric in (*ADDITIVE_METRICS, Metric.RATE_LIMITED_REQUESTS)
        else ""
    )
    top = incidents[0]
    start = min(i.window_start for i in incidents)
    end = _floor(rule.window, now) + (timedelta(days=1) if rule.window == "day" else timedelta(hours=1))
    chart_start = end - timedelta(days=7) if rule.window == "day" else start
    word = "over" if rule.condition == "above" else "under"
    return {
        "rule": rule,
        "where": rule.environment or rule.project.slug,
        "count": len(incidents),
        "noun": singular if len(incidents) == 1 else plural,
        "per_noun": singular,
        "items": [
            {
                "incident": i,
                "value": i.dimension_value,
                "line": per_value_line(i, now=now),
                "calls_link": incident_links(i, now=now)["calls"],
            }
            for i in listed
        ],
        "more": len(rest),
        "more_total": more_total,
        "top_line": per_value_line(top, now=now),
        "summary": f"{len(incidents)} {plural} {word} {format_metric(rule.metric, top.threshold)} "
        f"{METRIC_LABELS[rule.metric]} (top: {top.dimension_value} "
        f"{format_metric(rule.metric, top.value)} {per_when(rule.window, top.window_start, now)})",
        "link": page_url(
            metric_page(rule.metric),
            {"project": rule.project.slug, "from": rfc3339(chart_start), "to": rfc3339(end), **_scope_params(rule)},
        ),
        "rule_link": page_url(f"/alerts/{rule.pk}/", {}),
    }
