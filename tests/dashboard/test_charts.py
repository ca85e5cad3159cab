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
    fig = charts.stacked_figure(
        DAYS,
        {"claude-sonnet-4-6": [2.0, 1.0], "claude-haiku-4-5": [0.5, 0]},
        unit="USD",
        y_title="Spend (USD)",
        granularity="day",
    )
    assert [t["name"] for t in fig["data"]] == ["claude-sonnet-4-6", "claude-haiku-4-5"]
    assert [t["y"] for t in fig["data"]] == [[2.0, 1.0], [0.5, 0.0]]
    assert fig["layout"]["barmode"] == "stack"
    assert fig["layout"]["legend"]["traceorder"] == "normal"


def test_a_series_without_values_says_so():
    fig = charts.spend_figure(DAYS, [0, 0], granularity="day")
    assert fig["layout"]["annotations"][0]["text"] == "No calls in this range"
    errors = charts.stacked_figure(
        DAYS, {}, unit="requests", y_title="Errors", granularity="day", empty_message="No errors in this range"
    )
    assert errors["layout"]["annotations"][0]["text"] == "No errors in this range"
    assert len(errors["data"]) == 1


def test_month_projection_ends_at_the_projected_value_on_the_last_day():
    days = [datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=i) for i in range(3)]
    fig = charts.month_projection_figure(
        days, [1.0, 2.5, 4.0], last_day=datetime(2026, 11, 30, tzinfo=UTC), projected_usd=40.0
    )
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
    s = _Series(
        DAYS,
        cost_usd=[1, 2],
        requests=[3, 4],
        latency_p50_ms=[1, 2],
        latency_p95_ms=[3, 4],
        latency_p99_ms=[5, 6],
        latency_avg_ms=[2, 3],
        error_rate=[0, 0.5],
        cache_hit_rate=[0.25, None],
        cached_share=[0.1, 0.2],
        cache_savings_usd=[0.5, -0.1],
        cache_write_5m_tokens=[10, 0],
        cache_write_1h_tokens=[0, 5],
        input_tokens=[1, 1],
        output_tokens=[2, 2],
        cache_read_input_tokens=[3, 3],
        cache_creation_input_tokens=[4, 4],
        ttft_p50_ms=[1, None],
        ttft_p95_ms=[2, None],
        batch_latency_avg_ms=[None, 600_000],
    )
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
    small = charts.stacked_figure(DAYS, {"a": [1, 0], "b": [1, 0]}, unit="requests", y_title="Calls", granularity="day")
    assert small["layout"]["yaxis"]["dtick"] == 1
    big = charts.requests_figure(DAYS, [300, 12], granularity="day")
    assert "dtick" not in big["layout"]["yaxis"]


# --- decorate: thresholds, bands, incidents, budgets, the previous period, drill-down ----------------

DRILL = {"url": "/events?project=acme&environment=prod", "start": "2026-11-03T09:00:00Z", "end": "2026-11-03T12:00:00Z"}


def _rule(**fields):  # type: ignore[no-untyped-def]
    rule = {
        "name": "Spend per hour",
        "metric": "cost_usd",
        "window": "hour",
        "condition": "above",
        "threshold": 8.0,
        "sensitivity": 3.0,
        "band": [],
        "url": "/alerts/7/?project=acme",
    }
    rule.update(fields)
    return rule


class _Series:
    def __init__(self, buckets, **values):  # type: ignore[no-untyped-def]
        self.buckets = buckets
        self.values = values

    def __getitem__(self, name):  # type: ignore[no-untyped-def]
        return self.values[name]


def _kinds(fig):  # type: ignore[no-untyped-def]
    return [(t.get("meta") or {}).get("kind") for t in fig["data"]]


def test_a_threshold_is_a_labelled_line_across_the_chart_when_the_bucket_is_the_rule_window():
    figures = {"spend": charts.spend_figure(HOURS, [1, 9, 2], granularity="hour")}
    charts.decorate(figures, granularity="hour", overlays={"rules": [_rule()]}, drill=DRILL)
    [line] = [t for t in figures["spend"]["data"] if (t.get("meta") or {}).get("kind") == "threshold"]
    assert line["y"] == [8.0, 8.0]
    assert line["x"] == ["2026-11-03 08:30", "2026-11-03 11:30"]  # half a bucket beyond the bars
    assert line["name"] == "Spend per hour (> $8.00 per hour)"
    assert line["meta"]["url"] == "/alerts/7/?project=acme"
    assert figures["spend"]["layout"]["showlegend"] is True
    # An hourly spend threshold means nothing against daily sums.
    daily = {"spend": charts.spend_figure(DAYS, [1, 9], granularity="day")}
    charts.decorate(daily, granularity="day", overlays={"rules": [_rule()]}, drill=DRILL)
    assert "threshold" not in _kinds(daily["spend"])


def test_ratio_thresholds_are_drawn_whatever_the_bucket_in_percent():
    figures = {"error_rate": charts.error_rate_figure(DAYS, [0.01, 0.2], granularity="day")}
    rule = _rule(name="Errors", metric="error_rate", threshold=0.05)
    charts.decorate(figures, granularity="day", overlays={"rules": [rule]}, drill=DRILL)
    [line] = [t for t in figures["error_rate"]["data"] if (t.get("meta") or {}).get("kind") == "threshold"]
    assert line["y"] == [5.0, 5.0]
    assert line["name"] == "Errors (> 5.0%, hourly)"


def test_an_anomaly_rule_draws_its_band_per_window():
    band = [(HOURS[1], 0.01, 0.05), (HOURS[2], -0.02, 0.06)]
    figures = {"error_rate": charts.error_rate_figure(HOURS, [0.01, 0.2, 0.03], granularity="hour")}
    rule = _rule(name="Error anomaly", metric="error_rate", condition="anomaly", threshold=None, band=band)
    charts.decorate(figures, granularity="hour", overlays={"rules": [rule]}, drill=DRILL)
    upper, lower = [t for t in figures["error_rate"]["data"] if (t.get("meta") or {}).get("kind") == "band"]
    assert upper["x"] == lower["x"] == ["2026-11-03 10:00", "2026-11-03 11:00"]
    assert upper["y"] == [5.0, 6.0]
    assert lower["y"] == [1.0, 0.0]  # a rate below 0 is not a thing: clipped
    assert lower["fill"] == "tonexty"
    assert lower["name"] == "Error anomaly: normal band (median ± 3σ, hourly)"


def test_incidents_are_shaded_spans_with_a_hover_marker_linking_to_the_rule():
    incident = {
        "rule": "Spend per hour",
        "metric": "cost_usd",
        "start": HOURS[1],
        "end": HOURS[2],
        "open": False,
        "value": 9.0,
        "threshold": 8.0,
        "baseline": None,
        "url": "/alerts/7/?project=acme",
    }
    figures = {
        "spend": charts.spend_figure(HOURS, [1, 9, 2], granularity="hour"),
        "requests": charts.requests_figure(HOURS, [1, 2, 3], granularity="hour"),
    }
    charts.decorate(figures, granularity="hour", overlays={"incidents": [incident]}, drill=DRILL)
    [shape] = figures["spend"]["layout"]["shapes"]
    assert (shape["x0"], shape["x1"], shape["yref"]) == ("2026-11-03 09:30", "2026-11-03 10:30", "paper")
    [marker] = [t for t in figures["spend"]["data"] if (t.get("meta") or {}).get("kind") == "incident"]
    assert marker["x"] == ["2026-11-03 10:00"]
    assert marker["customdata"] == ["/alerts/7/?project=acme"]
    assert marker["text"] == [
        "Incident (resolved): Spend per hour<br>$9.00 vs threshold $8.00<br>click to open the rule"
    ]
    assert "shapes" not in figures["requests"]["layout"]  # another metric's incident


def test_the_previous_period_is_a_dashed_line_over_this_ones_buckets():
    previous = _Series([h - timedelta(hours=3) for h in HOURS], requests=[4, 0, 1])
    figures = {"requests": charts.requests_figure(HOURS, [1, 2, 3], granularity="hour")}
    charts.decorate(figures, granularity="hour", overlays={}, drill=DRILL, previous=previous)
    [trace] = [t for t in figures["requests"]["data"] if (t.get("meta") or {}).get("kind") == "previous"]
    assert trace["y"] == [4, 0, 1]
    assert trace["x"] == figures["requests"]["data"][0]["x"]
    assert trace["customdata"] == ["2026-11-03T06:00:00Z", "2026-11-03T07:00:00Z", "2026-11-03T08:00:00Z"]
    assert trace["line"]["dash"] == "dash"
    # A figure whose metric the previous series lacks gets no overlay rather than an error.
    ttft = {"ttft": charts.line_figure(HOURS, {"P95": [1, 2, 3]}, unit="ms", y_title="TTFT", granularity="hour")}
    charts.decorate(ttft, granularity="hour", overlays={}, drill=DRILL, previous=previous)
    assert len(ttft["ttft"]["data"]) == 1


def test_budgets_are_drawn_on_the_month_to_date_chart():
    days = [datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2, 3)]
    figures = {
        "mtd": charts.month_projection_figure(
            days, [1, 2, 3], last_day=datetime(2026, 11, 30, tzinfo=UTC), projected_usd=30
        )
    }
    budget = {"name": "Monthly", "period": "month", "limit_usd": 25.0, "url": "/alerts/budgets/?project=acme"}
    charts.decorate(figures, granularity="hour", overlays={"budgets": [budget]}, drill=DRILL)
    [line] = [t for t in figures["mtd"]["data"] if (t.get("meta") or {}).get("kind") == "budget"]
    assert line["y"] == [25.0, 25.0]
    assert line["x"] == ["2026-10-31 12:00", "2026-11-30 12:00"]  # to the month's last day
    assert line["name"] == "Budget Monthly ($25.00 a month)"


def test_drill_down_data_rides_on_every_figure_and_stacks_carry_their_filter():
    figures = {
        "by_model": charts.stacked_figure(
            HOURS, {"claude-haiku-4-5": [1, 0, 0], "other": [0, 1, 0]}, unit="USD", y_title="Spend", granularity="hour"
        ),
        "by_status": charts.stacked_figure(
            HOURS, {"HTTP 529": [1, 0, 0]}, unit="requests", y_title="Calls", granularity="hour"
        ),
        "by_type": charts.stacked_figure(
            HOURS, {"overloaded_error": [1, 0, 0]}, unit="requests", y_title="Errors", granularity="hour"
        ),
    }
    charts.decorate(figures, granularity="hour", overlays={}, drill=DRILL)
    assert figures["by_model"]["drill"] == {**DRILL, "step_seconds": 3600}
    assert figures["by_model"]["data"][0]["meta"] == {"drill": {"model": "claude-haiku-4-5"}}
    assert "meta" not in figures["by_model"]["data"][1]  # "other" is no single model
    assert figures["by_status"]["data"][0]["meta"] == {"drill": {"http_status": "529", "status": "error"}}
    assert figures["by_type"]["data"][0]["meta"] == {"drill": {"error_type": "overloaded_error", "status": "error"}}


def test_per_user_pages_say_which_charts_cannot_be_filtered_by_user():
    figures = {
        "requests": charts.requests_figure(DAYS, [1, 2], granularity="day"),
        "latency": charts.latency_figure(DAYS, [1, 2], [3, 4], [5, 6], granularity="day"),
    }
    charts.decorate(figures, granularity="day", overlays={}, drill=DRILL, per_user=True)
    assert figures["requests"]["data"][0]["y"] == [1, 2]
    assert all(t["y"] == [None, None] for t in figures["latency"]["data"])
    assert figures["latency"]["layout"]["annotations"][0]["text"] == charts.NOT_PER_USER
