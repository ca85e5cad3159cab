"""Budgets: 80% and 100% emails once each per period, projections, /api/v1/budgets/status."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client

from alerts.models import Budget, Notification
from alerts.selectors import budget_status
from alerts.services import budgets_check
from projects.services import ingest_key_create
from tests.rollups.helpers import spend_dollars

pytestmark = pytest.mark.usefixtures("clean_events")


def spend(key, prefix: str, dollars: int, *, when: datetime, service: str = "checkout", user_id: str = ""):  # type: ignore[no-untyped-def]
    spend_dollars(key, dollars, when=when, prefix=prefix, service=service, user_id=user_id)


@pytest.fixture
def key(transactional_db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod").key


def test_80_and_100_percent_notify_once_each_per_period(key):
    now = datetime.now(tz=UTC)
    budget = Budget.objects.create(
        project=key.project, name="Daily cap", period="day", limit_usd=Decimal(10), recipients=["finance@example.com"]
    )
    spend(key, "a", 7, when=now)
    assert budgets_check(now=now) == 0
    spend(key, "b", 1, when=now)  # $8 = 80%
    assert budgets_check(now=now) == 1
    assert budgets_check(now=now) == 0
    spend(key, "c", 1, when=now)  # $9: still only 80%
    assert budgets_check(now=now) == 0
    spend(key, "d", 2, when=now)  # $11: over 100%
    assert budgets_check(now=now) == 1
    assert budgets_check(now=now) == 0
    subjects = sorted(m.subject for m in mail.outbox)
    assert subjects == [
        "[Tally] acme: Daily cap at 100% ($11.00 of $10.00 daily)",
        "[Tally] acme: Daily cap at 80% ($8.00 of $10.00 daily)",
    ]
    assert Notification.objects.filter(kind="budget").count() == 2
    # The next period starts over.
    tomorrow = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1, hours=1)
    assert budget_status(budget, now=tomorrow).spent_usd == 0
    assert budgets_check(now=tomorrow) == 0


def test_projection_is_linear_over_the_period(key):
    now = datetime.now(tz=UTC)
    budget = Budget.objects.create(
        project=key.project, name="Month", period="month", limit_usd=Decimal(1000), recipients=["finance@example.com"]
    )
    spend(key, "m", 6, when=now)
    status = budget_status(budget, now=now)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(now.year, now.month)[1]
    elapsed = max((now - month_start).total_seconds(), 3600)
    assert status.spent_usd == Decimal(6)
    expected = Decimal(6) * Decimal(days * 86400 / elapsed)
    assert abs(status.projected_usd - expected) < Decimal("0.00001")
    assert status.exceeded is False
    assert status.period_end == month_start + timedelta(days=days)


def test_status_api_scopes_by_service_and_user(key):
    now = datetime.now(tz=UTC)
    Budget.objects.create(project=key.project, name="All", period="day", limit_usd=Decimal(5))
    Budget.objects.create(project=key.project, name="Search", period="day", limit_usd=Decimal(100), service="search")
    Budget.objects.create(project=key.project, name="Heavy user", period="day", limit_usd=Decimal(2), user_id="u_9")
    spend(key, "s", 3, when=now, service="search")
    spend(key, "u", 3, when=now, service="checkout", user_id="u_9")
    read = ingest_key_create(project_slug="acme", environment_name="prod", scope="read").secret
    body = Client().get("/api/v1/budgets/status", HTTP_AUTHORIZATION=f"Bearer {read}").json()
    by_name = {b["name"]: b for b in body["budgets"]}
    assert (by_name["All"]["spent_usd"], by_name["All"]["exceeded"]) == (6.0, True)
    assert (by_name["Search"]["spent_usd"], by_name["Search"]["exceeded"]) == (3.0, False)
    assert (by_name["Heavy user"]["spent_usd"], by_name["Heavy user"]["exceeded"]) == (3.0, True)
    assert by_name["All"]["limit_usd"] == 5.0
    assert by_name["All"]["period"] == "day"
    # A client of the search service sees the project budget and its own, not the user's.
    ingest_secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    scoped = Client().get("/api/v1/budgets/status?service=search", HTTP_AUTHORIZATION=f"Bearer {ingest_secret}")
    assert sorted(b["name"] for b in scoped.json()["budgets"]) == ["All", "Search"]
    scoped = Client().get(
        "/api/v1/budgets/status?service=checkout&user_id=u_9", HTTP_AUTHORIZATION=f"Bearer {ingest_secret}"
    )
    assert sorted(b["name"] for b in scoped.json()["budgets"]) == ["All", "Heavy user"]
    assert Client().get("/api/v1/budgets/status").status_code == 401
    # A NUL byte can't be in any stored name: a 400 that names the parameter, never a 500.
    nul = Client().get("/api/v1/budgets/status?service=a%00b", HTTP_AUTHORIZATION=f"Bearer {ingest_secret}")
    assert (nul.status_code, nul.json()) == (
        400,
        {"error": "service: must not contain a NUL character", "field": "service"},
    )


def test_daily_digest_compares_yesterday_with_the_trailing_week(key):
    from alerts.models import DigestSubscription
    from alerts.services import digest_send

    today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    for d in range(2, 5):  # $2 a day on the three days before yesterday
        spend(key, f"w{d}-", 2, when=today - timedelta(days=d) + timedelta(hours=12))
    spend(key, "y", 5, when=yesterday + timedelta(hours=12))
    DigestSubscription.objects.create(project=key.project, recipients=["lead@example.com"])
    assert digest_send() == 1
    assert digest_send() == 0  # once per day
    [message] = mail.outbox
    assert message.subject == f"[Tally] acme daily summary for {yesterday:%Y-%m-%d}"
    assert "Spend: $5.00 (7-day average $2.00, 150%)" in message.body
    assert "Requests: 5 (7-day average 2, 150%)" in message.body
    assert "claude-haiku-4-5 / checkout: $2.00 -> $5.00" in message.body  # vs the day before
