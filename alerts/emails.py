"""The email outbox: queue (render once, store), claim, send, retry.

Invariants:
- `notification_queue` inserts one row per dedupe key (ON CONFLICT DO NOTHING semantics via
  the unique index); a second call for the same key queues nothing.
- A row is sent only by whoever claimed it with a conditional UPDATE; `sent_at` is set
  after the SMTP server accepted the message. An SMTP failure leaves the row pending with
  `last_error` and a later `next_attempt_at` (exponential backoff); after MAX_ATTEMPTS it
  is marked failed, and both states show in the UI.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import IntegrityError, connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from alerts.models import Incident, Metric, Notification

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 30
BACKOFF_MAX_S = 3600
CLAIM_FOR = timedelta(minutes=5)
SEND_BATCH = 50

METRIC_LABELS: dict[str, str] = {
    Metric.COST_USD: "spend", Metric.REQUESTS: "requests", Metric.ERROR_RATE: "error rate",
    Metric.LATENCY_P95_MS: "P95 latency", Metric.LATENCY_AVG_MS: "average latency",
    Metric.CACHE_HIT_RATE: "cache hit rate", Metric.TTFT_P95_MS: "P95 time to first token",
    Metric.RATELIMIT_REQUESTS_HEADROOM_MIN: "rate-limit headroom (requests)",
    Metric.RATELIMIT_INPUT_TOKENS_HEADROOM_MIN: "rate-limit headroom (input tokens)",
    Metric.RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN: "rate-limit headroom (output tokens)",
    Metric.RATE_LIMITED_REQUESTS: "rate-limited calls (429)",
    Metric.COVERAGE: "provider coverage", Metric.UNMETERED_COST_USD: "unmetered spend",
}
_PERCENT = (Metric.ERROR_RATE, Metric.CACHE_HIT_RATE, Metric.RATELIMIT_REQUESTS_HEADROOM_MIN,
            Metric.RATELIMIT_INPUT_TOKENS_HEADROOM_MIN, Metric.RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN, Metric.COVERAGE)
_LOWER_IS_WORSE = (Metric.CACHE_HIT_RATE, *_PERCENT[2:])
PROVIDER_METRICS = (Metric.COVERAGE, Metric.UNMETERED_COST_USD)


def format_metric(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric in (Metric.LATENCY_P95_MS, Metric.LATENCY_AVG_MS, Metric.TTFT_P95_MS, "latency_p50_ms",
                  "latency_p99_ms", "ttft_p50_ms"):
        return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"
    if metric in (Metric.COST_USD, Metric.UNMETERED_COST_USD):
        return f"${value:,.2f}"
    if metric in _PERCENT:
        return f"{value * 100:.1f}%"
    return f"{value:,.0f}"


# Agreement 5 (alert email links): the page of the rule's metric. ttft_* (a metric another branch
# adds) goes with the latencies, so a prefix decides rather than the choices list.
METRIC_PAGES: dict[str, str] = {
    Metric.COST_USD: "/spend", Metric.REQUESTS: "/", Metric.ERROR_RATE: "/errors", Metric.CACHE_HIT_RATE: "/cache",
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
        dashboard = page_url("/reconciliation", {"project": project, "from": start.strftime("%Y-%m-%d"),
                                                 "to": last}, absolute=absolute)
        calls = page_url("/events", {"project": project, "from": rfc3339(start), "to": rfc3339(end)},
                         absolute=absolute)
        return {"dashboard": dashboard, "calls": calls}
    dashboard = page_url(metric_page(rule.metric), {"project": project, "from": rfc3339(chart_start),
                                                    "to": rfc3339(end), **_scope_params(rule)}, absolute=absolute)
    sort = "latency" if metric_page(rule.metric) == "/latency" else CALLS_SORT.get(rule.metric)
    calls = page_url("/events", {"project": project, "from": rfc3339(start), "to": rfc3339(end), **_scope_params(rule),
                                 "status": "error" if rule.metric == Metric.ERROR_RATE else None, "sort": sort},
                     absolute=absolute)
    return {"dashboard": dashboard, "calls": calls}


def incident_context(incident: Incident) -> dict[str, Any]:
    rule = incident.rule
    length = timedelta(days=1) if rule.window == "day" else timedelta(hours=1)
    if rule.condition == "anomaly":
        comparison = f"baseline {format_metric(rule.metric, incident.baseline)} (median of the last 14 " \
                     f"{'days' if rule.window == 'day' else 'like hours'})"
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
        "rule": rule, "incident": incident, "where": where, "scope": scope, "headline": headline,
        "comparison": comparison, "value_display": format_metric(rule.metric, incident.value),
        "window_start": incident.window_start, "window_end": incident.window_start + length,
        **explanation_display(rule.metric, incident.detail),
        "provider": provider_display((incident.detail or {}).get("provider")),
        "link": links["dashboard"], "calls_link": links["calls"],
    }


def provider_display(figures: dict[str, Any] | None) -> dict[str, Any] | None:
    """The day's reconciliation as the email prints it (provider metrics only)."""
    if not figures:
        return None
    return {"summary": f"Anthropic billed {format_metric(Metric.COST_USD, figures['provider_cost_usd'])}; "
                       f"Tally saw {format_metric(Metric.COST_USD, figures['tally_cost_usd'])}: coverage "
                       f"{format_metric(Metric.COVERAGE, figures['coverage'])}, unmetered "
                       f"{format_metric(Metric.UNMETERED_COST_USD, figures['unmetered_cost_usd'])}",
            "models": [f"{m['model']}: {format_metric(Metric.COST_USD, m['cost_usd'])} unmetered"
                       for m in figures.get("unmetered_models", [])]}


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
        contributors.append({**c, "now_display": now, "share_display": share, "line": line, "versus": versus,
                             "before_display": "" if c.get("before") is None else format_metric(metric, c["before"]),
                             "change_display": moved or ""})
    errors = []
    for e in detail.get("errors", []):
        label = "error type" if e["kind"] == "type" else "HTTP status"
        line = f"{e['count']:,} call{'' if e['count'] == 1 else 's'}, {_share(e['share'])} of errors"
        versus = "" if e.get("before") is None else f"{e['before']:,} a day earlier"
        errors.append({**e, "label": label, "line": line, "versus": versus, "share_display": _share(e["share"])})
    compared = detail.get("compared")
    return {"contributors": contributors, "error_counts": errors,
            # None: an incident from before this field; say nothing rather than guess.
            "no_baseline": compared is False}


def budget_context(status: Any, level: int) -> dict[str, Any]:
    b = status.budget
    scope = ", ".join(f"{k} {v}" for k, v in (("environment", b.environment), ("service", b.service),
                                               ("user", b.user_id)) if v) or "whole project"
    params = {"project": b.project.slug, "from": rfc3339(status.period_start), "to": rfc3339(status.period_end),
              "environment": b.environment, "service": b.service, "user": b.user_id}
    return {"budget": b, "level": level, "scope": scope, "spent": f"${status.spent_usd:,.2f}",
            "limit": f"${b.limit_usd:,.2f}", "projected": f"${status.projected_usd:,.2f}",
            "period_start": status.period_start, "period_end": status.period_end,
            "link": page_url("/spend", params),
            # The period's most expensive calls first: what to look at before the limit is reached.
            "calls_link": page_url("/events", {**params, "sort": "cost"})}


def budget_forecast_context(status: Any) -> dict[str, Any]:
    """The forecast warning: `status` is an alerts.selectors.BudgetStatus whose forecast date
    falls before the period ends."""
    context = budget_context(status, 0)
    day = status.forecast_exhausted_on
    context.update({"runs_out": f"{day:%b} {day.day}", "pace": status.pace_display,
                    "pace_days": status.pace_days_label, "forecast": status.forecast_display,
                    "period_word": status.budget.get_period_display()})
    return context


def model_notice_context(*, project_slug: str, model: str, first: Any, unpriced: bool) -> dict[str, Any]:
    """A new model's (or a model's first unpriced) notice; `first` is rollups' FirstCall."""
    hour_end = first.hour_start + timedelta(hours=1)
    where = " / ".join(part for part in (project_slug, first.environment, first.service) if part)
    return {"project": project_slug, "model": model, "unpriced": unpriced, "where": where,
            "environment": first.environment, "service": first.service,
            "hour_start": first.hour_start, "hour_end": hour_end,
            "calls_link": page_url("/events", {"project": project_slug, "model": model,
                                               "from": rfc3339(first.hour_start), "to": rfc3339(hour_end)}),
            "prices_link": page_url(f"/projects/{project_slug}/prices", {})}


def digest_link(*, project_slug: str, day: datetime) -> str:
    """The overview over the digest's eight days: yesterday and the week it is compared with."""
    return page_url("/", {"project": project_slug, "from": rfc3339(day - timedelta(days=7)),
                          "to": rfc3339(day + timedelta(days=1))})


def notification_queue(*, project_id: int, kind: str, dedupe_key: str, recipients: list[str], template: str,
                       context: dict[str, Any], incident: Incident | None = None) -> Notification | None:
    """Render and store one email; send it after COMMIT. None if that key was queued before."""
    subject = " ".join(render_to_string(f"emails/{template}_subject.txt", context).split())
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                project_id=project_id, kind=kind, dedupe_key=dedupe_key, incident=incident,
                recipients=list(recipients), subject=subject[:300],
                body_text=render_to_string(f"emails/{template}_body.txt", context),
                body_html=render_to_string(f"emails/{template}_body.html", context),
                next_attempt_at=timezone.now(),
            )
    except IntegrityError:
        return None
    transaction.on_commit(_send_soon)
    return notification


def _send_soon() -> None:
    from alerts.tasks import notifications_send_task

    try:
        notifications_send_task.delay()
    except Exception:  # broker down: the periodic sender picks the row up later
        logger.warning("could not queue the send task; the periodic sender will send it")


def notifications_send_due(*, now: datetime | None = None) -> tuple[int, int]:
    """Claim due rows and send them. Returns (sent, failed attempts)."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE alerts_notification SET claimed_until = %s, attempts = attempts + 1
               WHERE id IN (SELECT id FROM alerts_notification
                            WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= %s
                              AND (claimed_until IS NULL OR claimed_until < %s)
                            ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)
               RETURNING id""",
            [now + CLAIM_FOR, now, now, SEND_BATCH],
        )
        claimed = [row[0] for row in cursor.fetchall()]
    sent = failed = 0
    if not claimed:
        return 0, 0
    mail_connection = get_connection()
    for notification in Notification.objects.filter(pk__in=claimed):
        try:
            message = EmailMultiAlternatives(notification.subject, notification.body_text,
                                             settings.DEFAULT_FROM_EMAIL, notification.recipients,
                                             connection=mail_connection)
            message.attach_alternative(notification.body_html, "text/html")
            message.send()
        except (smtplib.SMTPException, OSError) as exc:
            failed += 1
            delay = min(BACKOFF_BASE_S * 2 ** (notification.attempts - 1), BACKOFF_MAX_S)
            gave_up = notification.attempts >= MAX_ATTEMPTS
            Notification.objects.filter(pk=notification.pk).update(
                claimed_until=None, last_error=f"{type(exc).__name__}: {exc}"[:2000],
                next_attempt_at=timezone.now() + timedelta(seconds=delay),
                failed_at=timezone.now() if gave_up else None)
            logger.warning("email %s failed (attempt %s): %s", notification.pk, notification.attempts, exc)
            with contextlib.suppress(Exception):  # a broken connection is replaced just below
                mail_connection.close()
            mail_connection = get_connection()
            continue
        Notification.objects.filter(pk=notification.pk).update(sent_at=timezone.now(), claimed_until=None,
                                                               last_error="")
        sent += 1
    return sent, failed
