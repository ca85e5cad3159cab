"""events -> rollup -> evaluation -> email, against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import socket
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest
from aiosmtpd.controller import Controller

from alerts.models import AlertRule, Incident, Notification
from alerts.outbox import notifications_send_due
from alerts.services import rules_evaluate
from projects.services import ingest_key_create
from rollups.services import rollup_until_current
from tests.rollups.helpers import ingest

pytestmark = pytest.mark.usefixtures("clean_events")


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


class SmtpServer:
    """A real SMTP server on loopback that can go away and come back on the same port."""

    def __init__(self, inbox: Inbox, port: int) -> None:
        self.inbox, self.port, self.controller = inbox, port, None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp(settings):  # type: ignore[no-untyped-def]
    inbox = Inbox()
    port = free_port()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    settings.TALLY_BASE_URL = "https://tally.example.com"
    server = SmtpServer(inbox, port)
    server.start()
    yield inbox, server
    server.stop()


def _body(message: Message, subtype: str) -> str:
    for part in message.walk():
        if part.get_content_type() == f"text/{subtype}":
            return part.get_content()
    raise AssertionError(f"no text/{subtype} part")


def _spend_events(hour: datetime, prefix: str, n: int, model: str, service: str, tokens: int) -> list[dict]:
    return [
        {
            "request_id": f"{prefix}{i}",
            "model": model,
            "service": service,
            "latency_ms": 900,
            "input_tokens": tokens,
            "output_tokens": 0,
            "timestamp": (hour + timedelta(minutes=i)).isoformat(),
        }
        for i in range(n)
    ]


def test_breach_emails_once_with_contributors_then_resolves_once(transactional_db, smtp):
    inbox, _ = smtp
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    # Evaluate at 5 past the current hour, so the +30 s / +60 s re-evaluations never cross an hour.
    now = datetime.now(tz=UTC).replace(minute=5, second=0, microsecond=0)
    closed = now.replace(minute=0) - timedelta(hours=1)
    # Same hour yesterday: a little Sonnet spend from search. The closed hour: checkout burns $3.
    ingest(key, _spend_events(closed - timedelta(days=1), "y", 2, "claude-sonnet-4-6", "search", 100_000))
    ingest(key, _spend_events(closed, "c", 10, "claude-sonnet-4-6", "checkout", 100_000))
    ingest(key, _spend_events(closed, "h", 5, "claude-haiku-4-5", "checkout", 1000))
    rollup_until_current()
    rule = AlertRule.objects.create(
        project=key.project,
        name="Prod Sonnet spend per hour",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=0.5,
        environment="prod",
        model="claude-sonnet-4-6",
        recipients=["oncall@example.com"],
        cooldown_minutes=60,
    )

    assert rules_evaluate(now=now) == {"opened": 1}
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message["Subject"] == "[Tally] prod: spend $3.00 > $0.50 (claude-sonnet-4-6)"
    assert message["To"] == "oncall@example.com"
    text = _body(message, "plain")
    assert "Value: $3.00, threshold $0.50" in text
    # Where it came from: all of it is checkout; against the same hour yesterday, checkout went
    # from $0 to $3 and search from $0.60 to $0.
    assert (
        "Where it came from (and the change vs the same window a day earlier):\n"
        "  - service checkout $3.00, 100% ($0.00 a day earlier, +$3.00)\n"
        "  - service search $0.00, 0% ($0.60 a day earlier, -$0.60)\n\n"
    ) in text.replace("\r\n", "\n")
    # The rule is scoped to one model, and every call had no feature: neither explains anything.
    assert "model claude-sonnet-4-6 " not in text
    assert "feature" not in text
    window = f"from={closed:%Y-%m-%dT%H}:00:00Z&to={closed + timedelta(hours=1):%Y-%m-%dT%H}:00:00Z"
    assert (
        f"Dashboard for this window: https://tally.example.com/spend?project=acme&{window}"
        "&environment=prod&model=claude-sonnet-4-6\r\n"
    ) in text
    assert (
        f"See the calls: https://tally.example.com/events?project=acme&{window}"
        "&environment=prod&model=claude-sonnet-4-6&sort=cost\r\n"
    ) in text
    assert "checkout" in _body(message, "html")
    incident = Incident.objects.get()
    assert incident.value == pytest.approx(3.0)
    assert incident.threshold == 0.5

    # Evaluating again (and again, concurrently or not) sends nothing more.
    assert rules_evaluate(now=now + timedelta(seconds=30)) == {"open": 1}
    assert rules_evaluate(project_ids=[key.project_id], now=now + timedelta(seconds=60)) == {"open": 1}
    assert len(inbox.messages) == 1

    # Two hours later the closed hour is quiet: one resolve email.
    later = now + timedelta(hours=2)
    assert rules_evaluate(now=later) == {"resolved": 1}
    assert len(inbox.messages) == 2
    assert inbox.messages[1]["Subject"] == "[Tally] Resolved: prod: Prod Sonnet spend per hour (claude-sonnet-4-6)"
    # Resolved when the hour closed at `later` was fine: the link spans the opening window up to that hour.
    span = f"from={closed:%Y-%m-%dT%H}:00:00Z&to={closed + timedelta(hours=2):%Y-%m-%dT%H}:00:00Z"
    assert (
        f"Dashboard for the incident: https://tally.example.com/spend?project=acme&{span}"
        "&environment=prod&model=claude-sonnet-4-6\r\n"
    ) in _body(inbox.messages[1], "plain")
    assert rules_evaluate(now=later + timedelta(minutes=1)) == {"ok": 1}
    assert len(inbox.messages) == 2
    assert Notification.objects.filter(sent_at__isnull=False).count() == 2
    assert rule.incidents.get().resolved_at == later


def test_smtp_outage_delays_the_email_until_the_server_returns(transactional_db, smtp):
    inbox, controller = smtp
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    now = datetime.now(tz=UTC)
    closed = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    ingest(key, _spend_events(closed, "o", 4, "claude-opus-4-7", "support", 200_000))
    rollup_until_current()
    AlertRule.objects.create(
        project=key.project,
        name="Spend",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=1.0,
        recipients=["oncall@example.com"],
    )
    controller.stop()  # the SMTP server goes away
    assert rules_evaluate(now=now) == {"opened": 1}
    notification = Notification.objects.get()
    assert notification.sent_at is None
    assert notification.attempts == 1
    assert "Connection" in notification.last_error or "refused" in notification.last_error
    assert notification.next_attempt_at > now
    # Not due yet: nothing is attempted.
    assert notifications_send_due(now=now) == (0, 0)
    controller.start()  # back, same address
    assert notifications_send_due(now=notification.next_attempt_at + timedelta(seconds=1)) == (1, 0)
    assert len(inbox.messages) == 1
    assert inbox.messages[0]["Subject"] == "[Tally] acme: spend $4.00 > $1.00"
    notification.refresh_from_db()
    assert notification.sent_at is not None
    assert notification.last_error == ""
    assert notifications_send_due(now=now + timedelta(hours=1)) == (0, 0)
