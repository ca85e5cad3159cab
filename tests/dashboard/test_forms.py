"""The filter bar: ranges, granularity, the previous period, and KPI changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.http import QueryDict

from dashboard.forms import filters_parse
from dashboard.selectors import Kpi

NOW = datetime(2026, 11, 26, 14, 35, tzinfo=UTC)


def parse(qs: str):  # type: ignore[no-untyped-def]
    return filters_parse(QueryDict(qs), now=NOW)


def test_default_is_the_last_seven_whole_days_including_today():
    f = parse("")
    assert (f.range, f.granularity) == ("7d", "day")
    assert f.start == datetime(2026, 11, 20, tzinfo=UTC)
    assert f.end == datetime(2026, 11, 27, tzinfo=UTC)
    assert f.params() == {"range": "7d"}


def test_24h_is_hourly_and_ends_with_the_current_hour():
    f = parse("range=24h")
    assert f.granularity == "hour"
    assert f.end == datetime(2026, 11, 26, 15, tzinfo=UTC)
    assert f.end - f.start == timedelta(hours=24)


def test_previous_period_has_the_length_of_the_elapsed_part():
    f = parse("range=7d")
    start, end = f.previous
    assert end == f.start
    # Six whole days plus today up to the end of the current hour (15:00).
    assert end - start == timedelta(days=6, hours=15)


def test_custom_range_is_inclusive_and_short_ones_are_hourly():
    f = parse("range=custom&from=2026-11-01&to=2026-11-02")
    assert (f.start, f.end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    assert f.granularity == "hour"
    assert f.params()["from"] == "2026-11-01"
    assert f.params()["to"] == "2026-11-02"
    assert parse("range=custom&from=2026-11-01&to=2026-11-03").granularity == "day"


def test_bad_values_are_dropped_with_a_message():
    f = parse("range=custom&from=2026-11-05&to=2026-11-01&model=" + "x" * 300)
    assert f.range == "7d"
    assert f.model == ""
    assert len(f.errors) == 2


def test_filters_round_trip_through_the_query_string():
    f = parse("range=30d&environment=prod&service=search&model=claude-haiku-4-5&project=acme")
    again = parse(f.querystring)
    assert (again.start, again.end, again.environment, again.service, again.model, again.project_slug) == (
        f.start,
        f.end,
        "prod",
        "search",
        "claude-haiku-4-5",
        "acme",
    )
    assert f.metric_filters == {"environment": ["prod"], "service": ["search"], "model": ["claude-haiku-4-5"]}


def test_kpi_change_direction_and_tone():
    assert Kpi("spend", "Spend", "usd", 110.0, 100.0, "bad").change == 0.1
    assert Kpi("spend", "Spend", "usd", 110.0, 100.0, "bad").tone == "bad"
    assert Kpi("hit", "Hit", "pct", 0.4, 0.5, "good").direction == "down"
    assert Kpi("hit", "Hit", "pct", 0.4, 0.5, "good").tone == "bad"
    assert Kpi("req", "Requests", "count", 5, 4).tone == "neutral"
    assert Kpi("req", "Requests", "count", 5, None).change is None
    assert Kpi("req", "Requests", "count", 5, 0).change is None


def test_rfc3339_instants_make_an_hourly_custom_range_without_range_custom():
    f = parse("from=2026-11-26T01:00:00Z&to=2026-11-26T04:00:00Z&environment=prod&project=acme")
    assert (f.range, f.granularity) == ("custom", "hour")
    assert (f.start, f.end) == (datetime(2026, 11, 26, 1, tzinfo=UTC), datetime(2026, 11, 26, 4, tzinfo=UTC))
    assert f.errors == ()
    assert f.params() == {
        "project": "acme",
        "from": "2026-11-26T01:00:00Z",
        "to": "2026-11-26T04:00:00Z",
        "environment": "prod",
    }
    again = parse(f.querystring)
    assert (again.start, again.end) == (f.start, f.end)


def test_offsets_and_datetime_local_inputs_are_read_as_utc_and_snap_outwards_to_whole_hours():
    f = parse("from=2026-11-26T03:30:00%2B02:00&to=2026-11-26T02:10")
    # 03:30+02:00 is 01:30 UTC, floored to 01:00; the datetime-local 02:10 (UTC) is ceiled to 03:00.
    assert (f.start, f.end) == (datetime(2026, 11, 26, 1, tzinfo=UTC), datetime(2026, 11, 26, 3, tzinfo=UTC))


def test_dates_stay_inclusive_whole_days_and_a_lone_from_runs_to_the_current_hour():
    f = parse("from=2026-11-01&to=2026-11-07")
    assert (f.start, f.end, f.granularity) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 8, tzinfo=UTC),
        "day",
    )
    assert f.params() == {"from": "2026-11-01", "to": "2026-11-07"}
    lone = parse("from=2026-11-26T10:00:00Z")
    assert (lone.start, lone.end) == (datetime(2026, 11, 26, 10, tzinfo=UTC), datetime(2026, 11, 26, 15, tzinfo=UTC))


def test_hour_presets_end_with_the_current_hour():
    assert (parse("range=1h").start, parse("range=1h").end) == (
        datetime(2026, 11, 26, 14, tzinfo=UTC),
        datetime(2026, 11, 26, 15, tzinfo=UTC),
    )
    six = parse("range=6h")
    assert (six.start, six.granularity) == (datetime(2026, 11, 26, 9, tzinfo=UTC), "hour")


def test_feature_and_user_filters_and_the_compare_toggle():
    f = parse("feature=summarize&user=u_1&model=claude-haiku-4-5&compare=1")
    assert (f.feature, f.user, f.compare) == ("summarize", "u_1", True)
    # user_id is not an aggregate dimension: metric filters leave it to per-user spend.
    assert f.metric_filters == {"model": ["claude-haiku-4-5"], "feature": ["summarize"]}
    assert f.params() == {
        "range": "7d",
        "model": "claude-haiku-4-5",
        "feature": "summarize",
        "user": "u_1",
        "compare": "1",
    }
    assert f.previous_whole == (datetime(2026, 11, 13, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC))
    assert f.calls_params(
        datetime(2026, 11, 26, 1, tzinfo=UTC), datetime(2026, 11, 26, 2, tzinfo=UTC), status="error"
    ) == {
        "from": "2026-11-26T01:00:00Z",
        "to": "2026-11-26T02:00:00Z",
        "model": "claude-haiku-4-5",
        "feature": "summarize",
        "user": "u_1",
        "status": "error",
    }
