from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.timeutil import utc_day, utc_day_number, utc_hour_number


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25T23:59:59.999999Z",
        "2026-11-26T00:00:00Z",
        "2026-11-26T00:00:00+00:00",
        "2026-11-26T01:30:00+02:00",
        "2026-11-25T22:30:00-03:00",
        "2026-11-26T05:45:00+05:45",
        "1970-01-01T00:00:00Z",
        "2024-02-29T12:00:00Z",
    ],
)
def test_hours_and_days_agree_with_the_epoch(text):
    ts = datetime.fromisoformat(text)
    epoch = ts.timestamp()
    assert utc_hour_number(ts) == int(epoch // 3600)
    assert utc_day_number(ts) == int(epoch // 86400)
    assert utc_day(utc_day_number(ts)) == ts.astimezone(UTC).date()


def test_a_whole_week_of_minutes_in_utc_and_in_an_offset():
    start = datetime(2026, 11, 20, tzinfo=UTC)
    plus_one = timezone(timedelta(hours=1))
    for minute in range(0, 7 * 24 * 60, 7):
        ts = start + timedelta(minutes=minute)
        for value in (ts, ts.astimezone(plus_one)):
            assert utc_hour_number(value) == int(value.timestamp()) // 3600
            assert utc_day_number(value) == int(value.timestamp()) // 86400
