"""dashboard/charts.py: pure functions from plain series to Plotly figure dicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from dashboard import charts

HOURS = [datetime(2026, 11, 3, h, tzinfo=UTC) for h in (9, 10, 11)]
DAYS = [datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2)]


def test_spend_figure_is_one_bar_trace_in_usd_with_exact_values():
    fig = charts.spend_figure(HOURS, [1.25, 0, 0.0012345678], granularity="hour")
    assert len(fig["data"]) == 1
    trace = fig["data"][0]
    assert trace["type"] == "bar"
    assert trace["x"] == ["2026-11-03 09:00", "2026-11-03 10:00", "2026-11-03 11:00"]
    assert trace["y"] == [1.25, 0.0, 0.001235]
    assert "$" in trace["hovertemplate"]
    layout = fig["layout"]
    assert layout["yaxis"]["title"]["text"] == "Spend (USD)"
    assert layout["yaxis"]["tickprefix"] == "$"
    assert layout["xaxis"]["title"]["text"] == "Hour (UTC)"
    assert layout["xaxis"]["type"] == "date"
    assert "annotations" not in layout


def test_latency_figure_has_three_percentile_lines_in_ms_and_gaps_stay_gaps():
    fig = charts.latency_figure(DAYS, [100, None], [250.456, None], [900, None], granularity="day")
    assert [t["name"] for t in fig["data"]] == ["P50", "P95", "P99"]
    assert [t["y"] for t in fig["data"]] == [[100.0, None], [250.46, None], [900.0, None]]
    assert all(t["type"] == "scatter" and t["connectgaps"] is False for t in fig["data"])
    assert all("ms" in t["hovertemplate"] for t in fig["data"])
    assert "(ms" in fig["layout"]["yaxis"]["title"]["text"]
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert fig["layout"]["xaxis"]["title"]["text"] == "Day (UTC)"
    assert fig["layout"]["showlegend"] is True


def test_rates_come_in_as_fractions_and_are_plotted_as_percent():
    fig = charts.error_rate_figure(HOURS, [0.5, 0.025, None], granularity="hour")
    assert fig["data"][0]["y"] == [50.0, 2.5, None]
    assert fig["layout"]["yaxis"]["title"]["text"] == "Error rate (%)"
    assert fig["layout"]["yaxis"]["ticksuffix"] == "%"
    assert "%" in fig["data"][0]["hovertemplate"]
    hit = charts.cache_hit_rate_figure(HOURS, [1, 0.333333333, 0], granularity="hour")
    assert hit["data"][0]["y"] == [100.0, 33.3333, 0.0]
    assert hit["layout"]["yaxis"]["title"]["text"] == "Cache hit rate (%)"


def test_requests_are_whole_numbers():
    fig = charts.requests_figure(DAYS, [3, 0], granularity="day")
    assert fig["data"][0]["y"] == [3, 0]
    assert fig["layout"]["yaxis"]["title"]["text"] == "Requests"
    assert fig["layout"]["showlegend"] is False


def test_stacked_figure_keeps_the_given_order_and_stacks():
    fig = charts.stacked_figure(DAYS, {"claude-sonnet-4-6": [2.0, 1.0], "claude-haiku-4-5": [0.5, 0]}, unit="USD",
                                y_title="Spend (USD)", granularity="day")
    assert [t["name"] for t in fig["data"]] == ["claude-sonnet-4-6", "claude-haiku-4-5"]
    assert [t["y"] for t in fig["data"]] == [[2.0, 1.0], [0.5, 0.0]]
    assert fig["layout"]["barmode"] == "stack"
    assert fig["layout"]["legend"]["traceorder"] == "normal"


def test_a_series_without_values_says_so():
    fig = charts.spend_figure(DAYS, [0, 0], granularity="day")
    assert fig["layout"]["annotations"][0]["text"] == "No calls in this range"
    errors = charts.stacked_figure(DAYS, {}, unit="requests", y_title="Errors", granularity="day",
                                   empty_message="No errors in this range")
    assert errors["layout"]["annotations"][0]["text"] == "No errors in this range"
    assert len(errors["data"]) == 1


def test_month_projection_ends_at_the_projected_value_on_the_last_day():
    days = [datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=i) for i in range(3)]
    fig = charts.month_projection_figure(days, [1.0, 2.5, 4.0], last_day=datetime(2026, 11, 30, tzinfo=UTC),
                                         projected_usd=40.0)
    actual, projection = fig["data"]
    assert actual["y"] == [1.0, 2.5, 4.0]
    assert projection["x"] == ["2026-11-03 00:00", "2026-11-30 00:00"]
    assert projection["y"] == [4.0, 40.0]
    assert projection["line"]["dash"] == "dash"


class _Series:
    def __init__(self, buckets, **values):  # type: ignore[no-untyped-def]
        self.buckets = buckets
        self.values = values

    def __getitem__(self, name):  # type: ignore[no-untyped-def]
        return self.values[name]


def test_page_figure_sets_are_json_serialisable_and_complete():
    n = len(DAYS)
    s = _Series(DAYS, cost_usd=[1, 2], requests=[3, 4], latency_p50_ms=[1, 2], latency_p95_ms=[3, 4],
                latency_p99_ms=[5, 6], latency_avg_ms=[2, 3], error_rate=[0, 0.5], cache_hit_rate=[0.25, None],
                cached_share=[0.1, 0.2], cache_savings_usd=[0.5, -0.1], cache_write_5m_tokens=[10, 0],
                cache_write_1h_tokens=[0, 5], input_tokens=[1, 1], output_tokens=[2, 2],
                cache_read_input_tokens=[3, 3], cache_creation_input_tokens=[4, 4], ttft_p50_ms=[1, None],
                ttft_p95_ms=[2, None], batch_latency_avg_ms=[None, 600_000])
    sets = {
        "overview": charts.overview_figures(s, granularity="day"),
        "latency": charts.latency_figures(s, granularity="day"),
        "errors": charts.errors_figures(s, {"overloaded_error": [0, 1]}, {"529": [0, 1]}, granularity="day"),
        "cache": charts.cache_figures(s, granularity="day"),
        "spend": charts.spend_figures(DAYS, {"m": [1, 2]}, {"svc": [1, 2]}, granularity="day"),
    }
    assert set(sets["overview"]) == {"spend", "requests", "latency", "error_rate", "cache_hit_rate", "tokens"}
    assert sets["errors"]["by_status"]["data"][0]["name"] == "HTTP 529"
    assert sets["cache"]["savings"]["data"][0]["y"] == [0.5, -0.1]
    assert [t["name"] for t in sets["cache"]["writes"]["data"]] == ["5-minute TTL", "1-hour TTL"]
    for figures in sets.values():
        for fig in figures.values():
            json.dumps(fig)
            assert all(len(t["x"]) == n for t in fig["data"])


def test_small_counts_get_whole_number_ticks():
    small = charts.stacked_figure(DAYS, {"a": [1, 0], "b": [1, 0]}, unit="requests", y_title="Calls",
                                  granularity="day")
    assert small["layout"]["yaxis"]["dtick"] == 1
    big = charts.requests_figure(DAYS, [300, 12], granularity="day")
    assert "dtick" not in big["layout"]["yaxis"]
