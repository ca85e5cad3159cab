"""The notification outbox: queue (render once, store), claim, send, retry.

Invariants:
- `notification_queue` inserts one row per dedupe key (ON CONFLICT DO NOTHING semantics via
  the unique index); a second call for the same key queues nothing.
- One notification is one email row (all recipients) plus one row per channel (dedupe key
  `<key>:channel:<hash of the URL>`), inserted together or not at all, so each destination is
  claimed, retried and given up on by itself, and a second call for the key queues none of them.
- A row is sent only by whoever claimed it with a conditional UPDATE; `sent_at` is set
  after the SMTP server (or the channel's service, through Apprise) accepted the message. A
  failure leaves the row pending with `last_error` and a later `next_attempt_at` (exponential
  backoff); after MAX_ATTEMPTS it is marked failed, and both states show in the UI.
- A channel row carries its URL as a Fernet token (decrypted only to send) and its mask for the page.
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
from cryptography.fernet import InvalidToken
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import IntegrityError, connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from alerts.channels import channel_decrypt, channel_key, channel_mask, channel_send
from alerts.models import Incident, Notification

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 30
BACKOFF_MAX_S = 3600
CLAIM_FOR = timedelta(minutes=5)
SEND_BATCH = 50
UNREADABLE_ERROR = (
    "cannot decrypt the channel URL: SECRET_KEY or TALLY_ENCRYPTION_KEY changed since it was saved; "
    "enter the channel again"
)


def notification_queue(
    *,
    project_id: int,
    kind: str,
    dedupe_key: str,
    recipients: list[str],
    template: str,
    context: dict[str, Any],
    incident: Incident | None = None,
    channels: list[str] | None = None,
) -> Notification | None:
    """Render and store one notification: an email to `recipients` (if any) and one row per channel
    (`channels`: Fernet tokens, as rules store them), each with the text body. Sent after COMMIT.
    Returns the first row stored; None if that key was queued before (or there is nowhere to send)."""
    subject = " ".join(render_to_string(f"emails/{template}_subject.txt", context).split())[:300]
    body_text = render_to_string(f"emails/{template}_body.txt", context)
    now = timezone.now()
    rows = []
    if recipients:
        rows.append(
            Notification(
                project_id=project_id,
                kind=kind,
                dedupe_key=dedupe_key,
                incident=incident,
                recipients=list(recipients),
                subject=subject,
                body_text=body_text,
                body_html=render_to_string(f"emails/{template}_body.html", context),
                next_attempt_at=now,
            )
        )
    for token in channels or []:
        row = Notification(
            project_id=project_id,
            kind=kind,
            incident=incident,
            channel_encrypted=token,
            subject=subject,
            body_text=body_text,
            body_html="",
            next_attempt_at=now,
        )
        try:
            url = channel_decrypt(token)
        except InvalidToken:
            # The secret changed since the channel was saved: nothing can send it, but the incident and
            # its other destinations must still go out, and the outbox page must say what was lost.
            row.dedupe_key = f"{dedupe_key}:channel:{channel_key(token)}"
            row.channel_masked, row.failed_at, row.last_error = "(unreadable channel)", now, UNREADABLE_ERROR
        else:
            row.dedupe_key = f"{dedupe_key}:channel:{channel_key(url)}"
            row.channel_masked = channel_mask(url)[:300]
        rows.append(row)
    if not rows:
        return None
    try:
        with transaction.atomic():
            for row in rows:
                row.save(force_insert=True)
    except IntegrityError:
        return None
    transaction.on_commit(_send_soon)
    return rows[0]


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
            error = _send_one(notification, mail_connection)
        except (smtplib.SMTPException, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):  # a broken connection is replaced just below
                mail_connection.close()
            mail_connection = get_connection()
        if error:
            failed += 1
            delay = min(BACKOFF_BASE_S * 2 ** (notification.attempts - 1), BACKOFF_MAX_S)
            gave_up = notification.attempts >= MAX_ATTEMPTS
            Notification.objects.filter(pk=notification.pk).update(
                claimed_until=None,
                last_error=error[:2000],
                next_attempt_at=timezone.now() + timedelta(seconds=delay),
                failed_at=timezone.now() if gave_up else None,
            )
            logger.warning(
                "notification %s to %s failed (attempt %s): %s",
                notification.pk,
                notification.destination,
                notification.attempts,
                error,
            )
            continue
        Notification.objects.filter(pk=notification.pk).update(
            sent_at=timezone.now(), claimed_until=None, last_error=""
        )
        sent += 1
    return sent, failed


def _send_one(notification: Notification, mail_connection: Any) -> str:
    """Send one row: "" when accepted, else the error. SMTP errors raise (the caller replaces the
    connection); a channel's failure comes back from Apprise as a value."""
    if not notification.channel_encrypted:
        message = EmailMultiAlternatives(
            notification.subject,
            notification.body_text,
            settings.DEFAULT_FROM_EMAIL,
            notification.recipients,
            connection=mail_connection,
        )
        message.attach_alternative(notification.body_html, "text/html")
        message.send()
        return ""
    try:
        url = channel_decrypt(notification.channel_encrypted)
    except InvalidToken:
        # Retrying cannot help until the old secret is back; the row stays visible with this error.
        return UNREADABLE_ERROR
    result = channel_send(url, title=notification.subject, body=notification.body_text)
    return "" if result.ok else result.error
