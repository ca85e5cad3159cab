"""Celery entry points of alerting. Each calls one service; state lives in PostgreSQL.

Invariant: evaluation is chained after each rollup pass (rollups.rollup_dirty_hours sends
alerts.evaluate_rules by name), so rules see the aggregates that pass just wrote.
"""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.db.utils import OperationalError

from alerts.services import digest_send, notifications_send, rules_evaluate


@shared_task(
    name="alerts.evaluate_rules",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def rules_evaluate_task(project_ids: list[int] | None = None) -> dict[str, int]:
    """Idempotent: one open incident per rule (unique index) and one email per dedupe key."""
    return rules_evaluate(project_ids=project_ids)


@shared_task(
    name="alerts.send_notifications",
    autoretry_for=(OperationalError, smtplib.SMTPException),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def notifications_send_task() -> int:
    """Idempotent: rows are claimed by conditional UPDATE and stamped sent_at once accepted."""
    return notifications_send()[0]


@shared_task(name="alerts.daily_digest")
def digest_send_task() -> int:
    """Idempotent: one digest per subscription and day (dedupe key digest:<id>:<day>)."""
    return digest_send()
