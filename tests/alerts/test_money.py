"""Money in alert emails and channel messages rounds as a bill does, as the pages do (core.money):
$2.045 is $2.05. Formatting the float (2.04499...) or a Decimal (half to even) said $2.04."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail

from alerts import formatting
from alerts.channels import channel_encrypt
from alerts.models import AlertRule, Budget, Incident, Metric, Notification
from alerts.selectors import BudgetStatus
from alerts.services import budgets_check, rules_evaluate
from projects.services import ingest_key_create
from rollups.services import rollup_until_current
from tests.rollups.helpers import ingest

# Haiku 4.5 input is $1 / MTok: 2,045,000 input tokens cost exactly $2.045.
HALF_CENT_TOKENS = 2_045_000
# A channel nobody listens on: its row is stored with the text body (the message a channel gets).
CHANNEL = "json://127.0.0.1:9/hook"


@pytest.fixture
def key(transactional_db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod").key


def spend_2045(key, *, when: datetime, user_id: str = "") -> None:  # type: ignore[no-untyped-def]
    event = {
        "request_id": "half-cent",
        "model": "claude-haiku-4-5",
        "service": "checkout",
        "latency_ms": 10,
        "input_tokens": HALF_CENT_TOKENS,
        "timestamp": when.isoformat(),
    }
    if user_id:
        event["user_id"] = user_id
    assert ingest(key, [event]).accepted == 1
    rollup_until_current()


def bodies(kind: str) -> list[str]:
    """The email's text and each channel's message, as stored in the outbox."""
    return [n.body_text.replace("\r\n", "\n") for n in Notification.objects.filter(kind=kind).order_by("pk")]


@pytest.mark.usefixtures("clean_events")
def test_incident_email_and_channel_say_2_05_for_2_045(key):
    now = datetime.now(tz=UTC).replace(minute=5, second=0, microsecond=0)
    spend_2045(key, when=now.replace(minute=0) - timedelta(minutes=30))
    AlertRule.objects.create(
        project=key.project,
        name="Spend per hour",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=1,
        environment="prod",
        recipients=["oncall@example.com"],
        channels_encrypted=[channel_encrypt(CHANNEL)],
    )
    assert rules_evaluate(now=now) == {"opened": 1}
    [message] = mail.outbox
    assert message.subject == "[Tally] prod: spend $2.05 > $1.00"
    email, channel = bodies("incident_opened")
    for text in (message.body.replace("\r\n", "\n"), email, channel):
        assert "Value: $2.05, threshold $1.00\n" in text
        assert "  - model claude-haiku-4-5 $2.05, 100%\n" in text
    html = Notification.objects.get(kind="incident_opened", channel_encrypted="").body_html
    assert "<td>model</td><td>claude-haiku-4-5</td><td>$2.05</td>" in html


@pytest.mark.usefixtures("clean_events")
def test_budget_email_and_channel_say_2_05_for_2_045(key):
    """spent_usd is a Decimal: `f"{d:,.2f}"` rounds it half to even, $2.04."""
    now = datetime.now(tz=UTC)
    spend_2045(key, when=now - timedelta(seconds=1))
    Budget.objects.create(
        project=key.project,
        name="Cap",
        period="day",
        limit_usd=Decimal("2.50"),
        recipients=["finance@example.com"],
        channels_encrypted=[channel_encrypt(CHANNEL)],
    )
    assert budgets_check(now=now) == 1
    [message] = mail.outbox
    assert message.subject == "[Tally] acme: Cap at 80% ($2.05 of $2.50 daily)"
    for text in bodies("budget"):
        assert "Spent so far: $2.05 of $2.50\n" in text


@pytest.mark.usefixtures("clean_events")
def test_per_user_message_says_2_05_for_2_045(key):
    now = datetime.now(tz=UTC).replace(minute=5, second=0, microsecond=0)
    spend_2045(key, when=now - timedelta(minutes=1), user_id="u_4812")
    AlertRule.objects.create(
        project=key.project,
        name="Heavy users",
        metric="cost_usd",
        window="day",
        condition="above",
        threshold=2,
        per="user_id",
        recipients=["oncall@example.com"],
    )
    assert rules_evaluate(now=now)["opened"] == 1
    [message] = mail.outbox
    assert message.subject == "[Tally] acme: u_4812 spent $2.05 today > $2.00"
    assert "  - u_4812 spent $2.05 today > $2.00\n" in message.body.replace("\r\n", "\n")


def test_large_amounts_keep_thousands_separators_and_cents(project):
    assert formatting.format_metric(Metric.COST_USD, 1234567.891) == "$1,234,567.89"
    assert formatting.format_metric(Metric.UNMETERED_COST_USD, 1234.565) == "$1,234.57"
    budget = Budget(project=project, name="Cap", period="month", limit_usd=Decimal("10000.00"))
    status = BudgetStatus(
        budget=budget,
        spent_usd=Decimal("12345.675"),
        projected_usd=Decimal("20000.005"),
        daily_pace_usd=Decimal("1500.125"),
        period_start=datetime(2026, 12, 1, tzinfo=UTC),
        period_end=datetime(2027, 1, 1, tzinfo=UTC),
    )
    context = formatting.budget_context(status, 100)
    assert (context["spent"], context["limit"], context["projected"]) == ("$12,345.68", "$10,000.00", "$20,000.01")
    assert status.pace_display == "$1,500.13/day"  # the forecast warning's pace


def test_the_per_user_line_and_the_explanation_round_half_up():
    rule = AlertRule(metric="cost_usd", window="day", condition="above", threshold=6.005, per="user_id")
    start = datetime(2026, 12, 3, tzinfo=UTC)
    incident = Incident(rule=rule, value=6.105, threshold=6.005, window_start=start, dimension_value="u_1")
    assert formatting.per_value_line(incident, now=start + timedelta(hours=3)) == "u_1 spent $6.11 today > $6.01"
    shown = formatting.explanation_display(
        "cost_usd", {"contributors": [{"dimension": "model", "value": "m", "now": 2.045, "before": 1.0, "share": 1}]}
    )
    [line] = shown["contributors"]
    assert (line["line"], line["versus"]) == ("$2.05, 100%", "$1.00 a day earlier, +$1.05")
