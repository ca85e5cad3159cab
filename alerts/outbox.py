"""The notification outbox: queue (render once, store), claim, send, retry.

Invariants:
- `notification_queue` inserts one row per dedupe key (ON CONFLICT DO NOTHING semantics via
  the unique index); a second call for the same key queues nothing.
- A row is sent only by whoever claimed it with a conditional UPDATE; `sent_at` is set
  after the SMTP server accepted the message. An SMTP failure leaves the row pending with
  `last_error` and a later `next_attempt_at` (exponential backoff); after MAX_ATTEMPTS it
  is marked failed, and both states show in the UI.
- The send task is scheduled by name (alerts.send_notifications), so this module does not
  import alerts.tasks: tasks sit on top of services, which sit on top of the outbox.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
from datetime import datetime, timedelta
from typing import Any

from celery import signature
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import IntegrityError, connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from alerts.models import Incident, Notification

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 30
BACKOFF_MAX_S = 3600
CLAIM_FOR = timedelta(minutes=5)
SEND_BATCH = 50


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
    try:
        signature("alerts.send_notifications").delay()
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
