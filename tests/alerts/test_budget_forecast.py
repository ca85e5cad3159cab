"""Budget forecast (issue 15 part 3): the pure computation with exact dates, then the status API,
the budgets page and the once-per-period warning email over real ingested spend."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client

from alerts.models import Budget, Notification
from alerts.selectors import budget_forecast, budget_status
from alerts.services import budgets_check
from projects.services import ingest_key_create
from rollups.services import rollup_until_current
from tests.rollups.helpers import ingest

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
DEC_END = datetime(2027, 1, 1, tzinfo=UTC)


def forecast(
    limit: int | str, spent: int | str, daily: list[int | str], *, now: datetime = NOW, period_end: datetime = DEC_END
) -> tuple[Decimal, date | None]:
    return budget_forecast(
        limit_usd=Decimal(limit),
        spent_usd=Decimal(spent),
        daily_spends=[Decimal(d) for d in daily],
        now=now,
        period_end=period_end,
    )


def test_a_flat_series_runs_out_when_the_rest_is_spent_at_that_pace():
    # $600 left at $40/day from Dec 10 12:00 is 15 days: Dec 25 12:00.
    assert forecast(1000, 400, [40] * 7) == (Decimal(40), date(2026, 12, 25))


def test_a_zero_series_gives_no_date():
    assert forecast(1000, 400, [0] * 7) == (Decimal(0), None)


def test_a_budget_already_exceeded_gives_today():
    assert forecast(1000, 1200, [40] * 7) == (Decimal(40), date(2026, 12, 10))
    assert forecast(1000, 1000, [0] * 7) == (Decimal(0), date(2026, 12, 10))  # reaching the limit is running out


def test_a_rising_series_uses_the_median_not_the_mean():
    # Median $40; the mean ($101.43) would say Dec 15.
    assert forecast(1000, 400, [10, 20, 30, 40, 50, 60, 500]) == (Decimal(40), date(2026, 12, 25))
    # Days without calls count as $0 and pull the median down with them.
    assert forecast(1000, 400, [0, 0, 0, 0, 30, 40, 50]) == (Decimal(0), None)


def test_running_out_after_the_period_ends_gives_no_date():
    # $900 left at $40/day is 22.5 days: Jan 2, after December (the spend resets on Jan 1).
    assert forecast(1000, 100, [40] * 7) == (Decimal(40), None)
    # Exactly at the period's end is not within it; a cent earlier is Dec 31.
    assert forecast(1000, 140, [40] * 7) == (Decimal(40), None)
    assert forecast(1000, "140.01", [40] * 7) == (Decimal(40), date(2026, 12, 31))
    # A pace far too small to matter is no date, not an overflow.
    assert forecast("999999999999.99", 0, ["0.01"] * 7) == (Decimal("0.01"), None)


def test_a_daily_budget_runs_out_within_the_day():
    tomorrow = datetime(2026, 12, 11, tzinfo=UTC)
    assert forecast(10, 2, [48] * 7, period_end=tomorrow) == (Decimal(48), date(2026, 12, 10))  # at 16:00
    assert forecast(100, 2, [48] * 7, period_end=tomorrow) == (Decimal(48), None)


# --- over real spend -------------------------------------------------------------------------


def spend_days(key, dollars_by_day: dict[date, int], *, service: str = "checkout") -> None:  # type: ignore[no-untyped-def]
    """$1 per call (Haiku 4.5 input is $1 / MTok), at noon of each day."""
    events = [
        {
            "request_id": f"{day}-{service}-{i}",
            "model": "claude-haiku-4-5",
            "latency_ms": 10,
            "input_tokens": 1_000_000,
            "service": service,
            "timestamp": (
                datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12, seconds=i)
            ).isoformat(),
        }
        for day, dollars in dollars_by_day.items()
        for i in range(dollars)
    ]
    assert ingest(key, events).accepted == len(events)
    rollup_until_current()


@pytest.fixture
def key(transactional_db, clean_events):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod").key


@pytest.fixture
def week(key):  # type: ignore[no-untyped-def]
    """The 7 UTC days before today: $0, $0, $1, $2, $2, $3, $30 (median $2, mean $5.43)."""
    today = datetime.now(tz=UTC).date()
    days = [today - timedelta(days=7 - i) for i in range(7)]
    spend_days(key, dict(zip(days, [0, 0, 1, 2, 2, 3, 30], strict=True)))
    return today


def test_status_carries_the_pace_of_the_last_seven_days_and_the_date(key, week):
    midnight = datetime.combine(week, datetime.min.time(), tzinfo=UTC)
    budget = Budget.objects.create(
        project=key.project, name="Daily", period="day", limit_usd=Decimal("1.50"), recipients=["lead@example.com"]
    )
    status = budget_status(budget, now=midnight)
    # Nothing spent today yet; $1.50 at $2/day lasts until 18:00.
    assert (status.spent_usd, status.daily_pace_usd, status.forecast_exhausted_on) == (0, 2, week)
    assert (status.pace_first_day, status.pace_last_day) == (week - timedelta(days=7), week - timedelta(days=1))
    first, last = week - timedelta(days=7), week - timedelta(days=1)
    assert status.forecast_display == (
        f"runs out {week:%b} {week.day} at $2.00/day (median of {first:%b} {first.day} – {last:%b} {last.day})"
    )
    assert status.as_dict()["forecast_exhausted_on"] == week.isoformat()
    assert status.as_dict()["daily_pace_usd"] == 2.0
    # A budget scoped to a service without calls has no pace and no date.
    quiet = Budget.objects.create(
        project=key.project, name="Quiet", period="day", limit_usd=Decimal(1), service="search"
    )
    assert (
        budget_status(quiet, now=midnight).daily_pace_usd,
        budget_status(quiet, now=midnight).forecast_exhausted_on,
    ) == (0, None)


def test_status_api_and_budgets_page_show_the_forecast(key, week):
    Budget.objects.create(project=key.project, name="Roomy", period="day", limit_usd=Decimal(1000))
    read = ingest_key_create(project_slug="acme", environment_name="prod", scope="read").secret
    [row] = Client().get("/api/v1/budgets/status", HTTP_AUTHORIZATION=f"Bearer {read}").json()["budgets"]
    assert (row["daily_pace_usd"], row["forecast_exhausted_on"]) == (2.0, None)
    assert (row["spent_usd"], row["exceeded"]) == (0.0, False)  # the existing fields stay

    from django.contrib.auth import get_user_model

    from projects.models import Membership

    user = get_user_model().objects.create_user("lead", password="pw-lead-1")
    Membership.objects.create(user=user, project=key.project, role="admin")
    client = Client()
    client.force_login(user)
    html = client.get("/alerts/budgets/?project=acme").content.decode()
    first, last = week - timedelta(days=7), week - timedelta(days=1)
    assert f"lasts the period at $2.00/day (median of {first:%b} {first.day} – {last:%b} {last.day})" in html
    response = client.post(
        "/alerts/budgets/?project=acme",
        {
            "name": "Warned",
            "period": "month",
            "limit_usd": "50",
            "recipients": "lead@example.com",
            "enabled": ["false", "true"],
            "warn_on_forecast": ["false", "true"],
        },
    )
    assert response.status_code == 302
    assert Budget.objects.get(name="Warned").warn_on_forecast is True


def test_the_warning_is_queued_once_per_period_and_only_when_the_date_is_inside_it(key, week):
    midnight = datetime.combine(week, datetime.min.time(), tzinfo=UTC)
    short = Budget.objects.create(
        project=key.project,
        name="Short",
        period="day",
        limit_usd=Decimal("1.50"),
        recipients=["lead@example.com"],
        warn_on_forecast=True,
    )
    # $2/day never reaches $30 before midnight: no warning; nor for a budget not set to warn.
    Budget.objects.create(
        project=key.project,
        name="Roomy",
        period="day",
        limit_usd=Decimal(30),
        recipients=["lead@example.com"],
        warn_on_forecast=True,
    )
    Budget.objects.create(
        project=key.project, name="Silent", period="day", limit_usd=Decimal("1.50"), recipients=["lead@example.com"]
    )
    assert budgets_check(now=midnight) == 1
    assert budgets_check(now=midnight) == 0
    assert budgets_check(now=midnight + timedelta(hours=3)) == 0  # the same period
    [notification] = Notification.objects.filter(kind=Notification.Kind.BUDGET_FORECAST)
    assert notification.dedupe_key == f"budget:{short.pk}:{week:%Y-%m-%d}:forecast"
    [message] = mail.outbox
    assert message.subject == (f"[Tally] acme: at this pace the daily budget Short runs out on {week:%b} {week.day}")
    first, last = week - timedelta(days=7), week - timedelta(days=1)
    assert f"Pace: $2.00/day, the median daily spend of {first:%b} {first.day} – {last:%b} {last.day}" in message.body
    assert "Spent so far: $0.00 of $1.50" in message.body
    # The next day is a new period: one more.
    assert budgets_check(now=midnight + timedelta(days=1)) == 1
