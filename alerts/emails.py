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
from datetime import datetime, timedelta
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
}
_PERCENT = (Metric.ERROR_RATE, Metric.CACHE_HIT_RATE, Metric.RATELIMIT_REQUESTS_HEADROOM_MIN,
            Metric.RATELIMIT_INPUT_TOKENS_HEADROOM_MIN, Metric.RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN)
_LOWER_IS_WORSE = (Metric.CACHE_HIT_RATE, *_PERCENT[2:])


def format_metric(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric in (Metric.LATENCY_P95_MS, Metric.LATENCY_AVG_MS, Metric.TTFT_P95_MS, "latency_p50_ms",
                  "latency_p99_ms", "ttft_p50_ms"):
        return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"
    if metric == Metric.COST_USD:
        return f"${value:,.2f}"
    if metric in _PERCENT:
        return f"{value * 100:.1f}%"
    return f"{value:,.0f}"


def dashboard_link(*, start: datetime, end: datetime, **filters: str | None) -> str:
    params = {"from": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "to": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    params.update({k: v for k, v in filters.items() if v})
    return f"{settings.TALLY_BASE_URL.rstrip('/')}/?{urlencode(params)}"


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
    contributors = []
    for c in incident.detail.get("contributors", []):
        contributors.append({**c, "now_display": format_metric(rule.metric, c["now"]),
                             "before_display": format_metric(rule.metric, c["before"]),
                             "change_display": ("+" if c["change"] >= 0 else "-")
                             + format_metric(rule.metric, abs(c["change"]))})
    return {
        "rule": rule, "incident": incident, "where": where, "scope": scope, "headline": headline,
        "comparison": comparison, "value_display": format_metric(rule.metric, incident.value),
        "window_start": incident.window_start, "window_end": incident.window_start + length,
        "contributors": contributors,
        "link": dashboard_link(start=incident.window_start - length * 6, end=incident.window_start + length,
                               environment=rule.environment, service=rule.service, model=rule.model),
    }


def budget_context(status: Any, level: int) -> dict[str, Any]:
    b = status.budget
    scope = ", ".join(f"{k} {v}" for k, v in (("environment", b.environment), ("service", b.service),
                                               ("user", b.user_id)) if v) or "whole project"
    return {"budget": b, "level": level, "scope": scope, "spent": f"${status.spent_usd:,.2f}",
            "limit": f"${b.limit_usd:,.2f}", "projected": f"${status.projected_usd:,.2f}",
            "period_start": status.period_start, "period_end": status.period_end,
            "link": dashboard_link(start=status.period_start, end=status.period_end,
                                   environment=b.environment, service=b.service)}


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
