"""Plotly figure dicts from plain series: pure functions, no queries, no Django.

Input: bucket start times (tz-aware datetimes, shown in UTC) and one list of numbers per
trace, `None` where a bucket has nothing to measure (a latency or a rate of zero calls is a
gap, not a zero). Output: `{"data": [...], "layout": {...}}`, embedded by the template with
`json_script` and drawn by static/dashboard/charts.js with `Plotly.newPlot`.

Rates come in as fractions (0.031) and are plotted as percentages (3.1) so that the axis,
the ticks and the hover all read "%"; money is USD and latency milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.money import usd

Number = float | int | None

FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
PALETTE = ("#4f46e5", "#0d9488", "#d97706", "#db2777", "#0284c7", "#7c3aed", "#65a30d", "#64748b", "#dc2626")
LATENCY_COLORS = {"P50": "#0d9488", "P95": "#4f46e5", "P99": "#db2777"}

# Per unit: the y-axis tick decoration and the hover number format.
UNITS: dict[str, dict[str, str]] = {
    "USD": {"tickprefix": "$", "ticksuffix": "", "hover": "$%{y:,.4f}"},
    "ms": {"tickprefix": "", "ticksuffix": " ms", "hover": "%{y:,.1f} ms"},
    "min": {"tickprefix": "", "ticksuffix": " min", "hover": "%{y:,.1f} min"},
    "%": {"tickprefix": "", "ticksuffix": "%", "hover": "%{y:.2f}%"},
    "requests": {"tickprefix": "", "ticksuffix": "", "hover": "%{y:,d}"},
    "tokens": {"tickprefix": "", "ticksuffix": "", "hover": "%{y:,d} tokens"},
}
_ROUND = {"USD": 6, "ms": 2, "min": 2, "%": 4, "requests": 0, "tokens": 0}


def x_values(buckets: Sequence[datetime]) -> list[str]:
    """Bucket starts as UTC wall-clock strings: plotly.js has no time zones, so we pick one."""
    return [b.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for b in buckets]


def _clean(values: Sequence[Number], unit: str) -> list[float | int | None]:
    places = _ROUND[unit]
    out: list[float | int | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif places == 0:
            out.append(int(v))
        else:
            out.append(round(float(v), places))
    return out


def _percent(values: Sequence[Number]) -> list[float | None]:
    return [None if v is None else float(v) * 100 for v in values]


def _layout(
    *, y_title: str, unit: str, granularity: str, legend: bool, stacked: bool = False, log: bool = False
) -> dict[str, Any]:
    deco = UNITS[unit]
    yaxis: dict[str, Any] = {
        "title": {"text": y_title},
        "tickprefix": deco["tickprefix"],
        "ticksuffix": deco["ticksuffix"],
        "gridcolor": "#e2e8f0",
        "zeroline": False,
        "automargin": True,
    }
    if log:
        # Latency spans orders of magnitude (a P99 of minutes next to a P50 of a second).
        # Full numbers on every tick (Plotly abbreviates the 2s and 5s between decades otherwise);
        # no suffix, since Plotly would put it on the decades only: the unit is in the title.
        yaxis.update(type="log", tickformat=",.2~f", ticksuffix="")
    else:
        yaxis["rangemode"] = "tozero"
    if unit in ("ms", "requests"):
        yaxis.update(exponentformat="none", separatethousands=True)
    return {
        "height": 280,
        "margin": {"l": 64, "r": 16, "t": 36 if legend else 12, "b": 44},
        "font": {"family": FONT, "size": 12, "color": "#334155"},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "hovermode": "x unified",
        "showlegend": legend,
        # traceorder: Plotly reverses the legend of stacked bars by default; keep the trace order.
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "traceorder": "normal"},
        "barmode": "stack" if stacked else "group",
        "bargap": 0.15,
        "xaxis": {
            "type": "date",
            "title": {"text": "Hour (UTC)" if granularity == "hour" else "Day (UTC)"},
            "hoverformat": "%b %d, %H:%M UTC" if granularity == "hour" else "%a %b %d",
            "showgrid": False,
            "linecolor": "#cbd5e1",
        },
        "yaxis": yaxis,
    }


def _no_data_note(layout: dict[str, Any], message: str) -> None:
    layout["annotations"] = [
        {
            "text": message,
            "showarrow": False,
            "xref": "paper",
            "yref": "paper",
            "x": 0.5,
            "y": 0.5,
            "font": {"size": 13, "color": "#64748b"},
        }
    ]


def _whole_ticks(layout: dict[str, Any], traces: Mapping[str, Sequence[Number]], *, stacked: bool, unit: str) -> None:
    """Counts of a few don't get ticks at 0.5: below 10, tick every whole number."""
    if unit not in ("requests", "tokens"):
        return
    columns = list(zip(*traces.values(), strict=True)) or [()]
    peak = max((sum(v or 0 for v in col) if stacked else max((v or 0 for v in col), default=0)) for col in columns)
    if peak < 10:
        layout["yaxis"].update(dtick=1, tickformat=",d")


def _has_values(traces: Mapping[str, Sequence[Number]]) -> bool:
    return any(v for values in traces.values() for v in values)


def line_figure(
    buckets: Sequence[datetime],
    traces: Mapping[str, Sequence[Number]],
    *,
    unit: str,
    y_title: str,
    granularity: str,
    colors: Mapping[str, str] | None = None,
    empty_message: str = "No calls in this range",
    log: bool = False,
) -> dict[str, Any]:
    """One line per trace; `None` values are gaps."""
    x = x_values(buckets)
    data = []
    for i, (name, values) in enumerate(traces.items()):
        color = (colors or {}).get(name, PALETTE[i % len(PALETTE)])
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": x,
                "y": _clean(values, unit),
                "line": {"color": color, "width": 2},
                "marker": {"color": color, "size": 4},
                "hovertemplate": UNITS[unit]["hover"],
                "connectgaps": False,
            }
        )
    layout = _layout(y_title=y_title, unit=unit, granularity=granularity, legend=len(data) > 1, log=log)
    if not _has_values(traces):
        _no_data_note(layout, empty_message)
    return {"data": data, "layout": layout}


def bar_figure(
    buckets: Sequence[datetime],
    traces: Mapping[str, Sequence[Number]],
    *,
    unit: str,
    y_title: str,
    granularity: str,
    stacked: bool = True,
    empty_message: str = "No calls in this range",
) -> dict[str, Any]:
    """Bars per bucket, one trace per name (stacked by default)."""
    x = x_values(buckets)
    data = [
        {
            "type": "bar",
            "name": name,
            "x": x,
            "y": _clean(values, unit),
            "marker": {"color": PALETTE[i % len(PALETTE)]},
            "hovertemplate": UNITS[unit]["hover"],
            # Explicit (ms on a date axis): Plotly infers a bar's width from the gaps between x values,
            # and a one-bucket range (an alert email's hour) has none, so its bar was a hairline.
            **({"width": _STEP_SECONDS[granularity] * 1000 * 0.8} if granularity in _STEP_SECONDS else {}),
        }
        for i, (name, values) in enumerate(traces.items())
    ]
    layout = _layout(y_title=y_title, unit=unit, granularity=granularity, legend=len(data) > 1, stacked=stacked)
    _whole_ticks(layout, traces, stacked=stacked, unit=unit)
    if not _has_values(traces):
        _no_data_note(layout, empty_message)
    return {"data": data, "layout": layout}


def spend_figure(buckets: Sequence[datetime], cost_usd: Sequence[Number], *, granularity: str) -> dict[str, Any]:
    return bar_figure(buckets, {"Spend": cost_usd}, unit="USD", y_title="Spend (USD)", granularity=granularity)


def requests_figure(buckets: Sequence[datetime], requests: Sequence[Number], *, granularity: str) -> dict[str, Any]:
    return bar_figure(buckets, {"Requests": requests}, unit="requests", y_title="Requests", granularity=granularity)


def latency_figure(
    buckets: Sequence[datetime],
    p50: Sequence[Number],
    p95: Sequence[Number],
    p99: Sequence[Number],
    *,
    granularity: str,
) -> dict[str, Any]:
    return line_figure(
        buckets,
        {"P50": p50, "P95": p95, "P99": p99},
        unit="ms",
        y_title="Latency (ms, log scale)",
        granularity=granularity,
        colors=LATENCY_COLORS,
        log=True,
    )


def rate_figure(
    buckets: Sequence[datetime], rates: Mapping[str, Sequence[Number]], *, y_title: str, granularity: str
) -> dict[str, Any]:
    """Rates given as fractions, drawn as percentages."""
    return line_figure(
        buckets,
        {name: _percent(values) for name, values in rates.items()},
        unit="%",
        y_title=y_title,
        granularity=granularity,
    )


def error_rate_figure(buckets: Sequence[datetime], error_rate: Sequence[Number], *, granularity: str) -> dict[str, Any]:
    return rate_figure(buckets, {"Error rate": error_rate}, y_title="Error rate (%)", granularity=granularity)


def cache_hit_rate_figure(
    buckets: Sequence[datetime], hit_rate: Sequence[Number], *, granularity: str
) -> dict[str, Any]:
    return rate_figure(buckets, {"Cache hit rate": hit_rate}, y_title="Cache hit rate (%)", granularity=granularity)


def tokens_figure(
    buckets: Sequence[datetime], tokens: Mapping[str, Sequence[Number]], *, granularity: str
) -> dict[str, Any]:
    return bar_figure(buckets, tokens, unit="tokens", y_title="Tokens", granularity=granularity, stacked=True)


def stacked_figure(
    buckets: Sequence[datetime],
    stacks: Mapping[str, Sequence[Number]],
    *,
    unit: str,
    y_title: str,
    granularity: str,
    empty_message: str = "No calls in this range",
) -> dict[str, Any]:
    """Stacked bars of a total split by a dimension (model, service, error type, ...)."""
    if not stacks:
        stacks = {"none": [0] * len(buckets)}
    return bar_figure(
        buckets, stacks, unit=unit, y_title=y_title, granularity=granularity, stacked=True, empty_message=empty_message
    )


def month_projection_figure(
    days: Sequence[datetime], cumulative_usd: Sequence[Number], *, last_day: datetime, projected_usd: float
) -> dict[str, Any]:
    """Cumulative spend per day of the month so far, and a dashed linear projection to its last day."""
    x = x_values(days)
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "Spend to date",
            "x": x,
            "y": _clean(cumulative_usd, "USD"),
            "line": {"color": PALETTE[0], "width": 2},
            "marker": {"color": PALETTE[0], "size": 5},
            "hovertemplate": UNITS["USD"]["hover"],
        }
    ]
    if days:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "Projection (linear)",
                "x": [x[-1], x_values([last_day])[0]],
                "y": _clean([cumulative_usd[-1], projected_usd], "USD"),
                "line": {"color": PALETTE[2], "width": 2, "dash": "dash"},
                "hovertemplate": UNITS["USD"]["hover"],
            }
        )
    layout = _layout(y_title="Cumulative spend (USD)", unit="USD", granularity="day", legend=True)
    return {"data": data, "layout": layout}


class Series(Protocol):
    """A selector's time series: bucket starts plus named lists of per-bucket values."""

    buckets: list[datetime]

    def __getitem__(self, name: str) -> list[Any]: ...


def overview_figures(s: Series, *, granularity: str) -> dict[str, dict[str, Any]]:
    return {
        "spend": spend_figure(s.buckets, s["cost_usd"], granularity=granularity),
        "requests": requests_figure(s.buckets, s["requests"], granularity=granularity),
        "latency": latency_figure(
            s.buckets, s["latency_p50_ms"], s["latency_p95_ms"], s["latency_p99_ms"], granularity=granularity
        ),
        "error_rate": error_rate_figure(s.buckets, s["error_rate"], granularity=granularity),
        "cache_hit_rate": cache_hit_rate_figure(s.buckets, s["cache_hit_rate"], granularity=granularity),
        "tokens": tokens_figure(
            s.buckets,
            {
                "Input": s["input_tokens"],
                "Output": s["output_tokens"],
                "Cache read": s["cache_read_input_tokens"],
                "Cache write": s["cache_creation_input_tokens"],
            },
            granularity=granularity,
        ),
    }


def ttft_figure(
    buckets: Sequence[datetime], p50: Sequence[Number], p95: Sequence[Number], *, granularity: str
) -> dict[str, Any]:
    """Time to first token of streamed online calls; gaps where no call reported one."""
    return line_figure(
        buckets,
        {"P50": p50, "P95": p95},
        unit="ms",
        y_title="Time to first token (ms)",
        granularity=granularity,
        colors=LATENCY_COLORS,
        empty_message="No streamed call reported time to first token",
    )


def batch_turnaround_figure(
    buckets: Sequence[datetime], average_ms: Sequence[Number], *, granularity: str
) -> dict[str, Any]:
    """Average Message Batches turnaround, in minutes (results come back minutes to hours later)."""
    minutes = [None if v is None else float(v) / 60_000 for v in average_ms]
    return line_figure(
        buckets,
        {"Average turnaround": minutes},
        unit="min",
        y_title="Batch turnaround (min)",
        granularity=granularity,
        colors={"Average turnaround": PALETTE[2]},
        empty_message="No Message Batches calls in this range",
    )


def latency_figures(s: Series, *, granularity: str) -> dict[str, dict[str, Any]]:
    """The Latency page: online calls' percentiles, TTFT and average; batch turnaround apart."""
    return {
        "percentiles": latency_figure(
            s.buckets, s["latency_p50_ms"], s["latency_p95_ms"], s["latency_p99_ms"], granularity=granularity
        ),
        "ttft": ttft_figure(s.buckets, s["ttft_p50_ms"], s["ttft_p95_ms"], granularity=granularity),
        "average": line_figure(
            s.buckets,
            {"Average": s["latency_avg_ms"]},
            unit="ms",
            y_title="Average latency (ms)",
            granularity=granularity,
        ),
        "batch": batch_turnaround_figure(s.buckets, s["batch_latency_avg_ms"], granularity=granularity),
    }


def errors_figures(
    s: Series,
    by_type: Mapping[str, Sequence[Number]],
    by_status: Mapping[str, Sequence[Number]],
    *,
    granularity: str,
    headroom: Mapping[str, Sequence[Number]] | None = None,
    rate_limited: Sequence[int] | None = None,
) -> dict[str, dict[str, Any]]:
    return {
        "ratelimit": ratelimit_figure(
            s.buckets, headroom or {}, rate_limited or [0] * len(s.buckets), granularity=granularity
        ),
        "error_rate": error_rate_figure(s.buckets, s["error_rate"], granularity=granularity),
        "by_type": stacked_figure(
            s.buckets,
            by_type,
            unit="requests",
            y_title="Errors",
            granularity=granularity,
            empty_message="No errors in this range",
        ),
        "by_status": stacked_figure(
            s.buckets,
            {f"HTTP {code}": v for code, v in by_status.items()},
            unit="requests",
            y_title="Calls",
            granularity=granularity,
            empty_message="No HTTP statuses reported in this range",
        ),
    }


def ratelimit_figure(
    buckets: Sequence[datetime],
    headroom: Mapping[str, Sequence[Number]],
    rate_limited: Sequence[int],
    *,
    granularity: str,
) -> dict[str, Any]:
    """Rate-limit headroom (%) per model over time, with the buckets that had HTTP 429s marked
    on the 0% line (how close the limit came, and when it was hit)."""
    figure = line_figure(
        buckets,
        {name: _percent(values) for name, values in headroom.items()},
        unit="%",
        y_title="Lowest headroom (%)",
        granularity=granularity,
        empty_message="No call reported rate-limit headers in this range",
    )
    hits = [(x, n) for x, n in zip(x_values(buckets), rate_limited, strict=True) if n]
    if hits:
        figure["data"].append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "HTTP 429",
                "x": [x for x, _ in hits],
                "y": [0] * len(hits),
                "text": [f"{n:,} rate-limited call{'s' if n != 1 else ''}" for _, n in hits],
                "marker": {"symbol": "x", "size": 11, "color": "#dc2626"},
                "hovertemplate": "%{text}<extra></extra>",
            }
        )
        figure["layout"]["showlegend"] = True
        figure["layout"]["margin"]["t"] = 36
        figure["layout"].pop("annotations", None)
    figure["layout"]["yaxis"]["range"] = [-5, 105]
    return figure


def cache_figures(s: Series, *, granularity: str) -> dict[str, dict[str, Any]]:
    return {
        "rates": rate_figure(
            s.buckets,
            {"Cache hit rate": s["cache_hit_rate"], "Cached share of prompt tokens": s["cached_share"]},
            y_title="Share (%)",
            granularity=granularity,
        ),
        "savings": bar_figure(
            s.buckets,
            {"Saved": s["cache_savings_usd"]},
            unit="USD",
            y_title="Saved by caching (USD)",
            granularity=granularity,
        ),
        "writes": stacked_figure(
            s.buckets,
            {"5-minute TTL": s["cache_write_5m_tokens"], "1-hour TTL": s["cache_write_1h_tokens"]},
            unit="tokens",
            y_title="Cache write tokens",
            granularity=granularity,
            empty_message="No cache writes in this range",
        ),
    }


def spend_figures(
    buckets: Sequence[datetime],
    by_model: Mapping[str, Sequence[Number]],
    by_service: Mapping[str, Sequence[Number]],
    *,
    granularity: str,
) -> dict[str, dict[str, Any]]:
    return {
        "by_model": stacked_figure(buckets, by_model, unit="USD", y_title="Spend (USD)", granularity=granularity),
        "by_service": stacked_figure(buckets, by_service, unit="USD", y_title="Spend (USD)", granularity=granularity),
    }


# --- what every time chart gets on top: thresholds, incidents, the previous period, drill-down ---------

# The page metric (CONTRACT §4 name, as alert rules and the series use it) each figure charts,
# by its key in a page's figure set. Figures not named here get drill-down only.
FIGURE_METRICS = {
    "spend": "cost_usd",
    "by_model": "cost_usd",
    "by_service": "cost_usd",
    "requests": "requests",
    "latency": "latency_p95_ms",
    "percentiles": "latency_p95_ms",
    "average": "latency_avg_ms",
    "ttft": "ttft_p95_ms",
    "error_rate": "error_rate",
    "cache_hit_rate": "cache_hit_rate",
    "rates": "cache_hit_rate",
}
METRIC_UNITS = {"cost_usd": "USD", "requests": "requests", "error_rate": "%", "cache_hit_rate": "%"}
# Sums over a window: a rule's threshold is per its window, so it is drawn only on a chart of
# that bucket. Ratios and latencies read the same whatever the bucket.
ADDITIVE_METRICS = {"cost_usd", "requests"}
# Figures a per-user page can fill (per-user spend keeps requests, errors and spend per day).
PER_USER_FIGURES = {"spend", "requests", "error_rate", "mtd"}
NOT_PER_USER = "Not kept per end user: clear the user filter for this chart"
# Stacked figures whose traces are values of an explorer filter: a click narrows to the trace too.
TRACE_FILTERS = {"by_model": "model", "by_service": "service", "by_type": "error_type", "by_status": "http_status"}
ALERT_COLOR = "#dc2626"
PREVIOUS_COLOR = "#94a3b8"
_STEP_SECONDS = {"hour": 3600, "day": 86400}


def _unit_of(metric: str) -> str:
    return METRIC_UNITS.get(metric, "ms")


def _display(metric: str, value: float | None) -> str:
    """A metric value as the rule pages word it: $8.00, 3.1%, 2.3 s, 1,200."""
    if value is None:
        return "n/a"
    unit = _unit_of(metric)
    if unit == "USD":
        return usd(value, places=2)
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "ms":
        return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"
    return f"{value:,.0f}"


def _plotted(metric: str, value: float) -> float:
    return value * 100 if _unit_of(metric) == "%" else value


def _edges(x: Sequence[str], granularity: str) -> tuple[str, str]:
    """The chart's x extent, half a bucket beyond the first and last bucket (bars are centred)."""
    step = timedelta(seconds=_STEP_SECONDS[granularity])
    first = datetime.strptime(x[0], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    last = datetime.strptime(x[-1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return x_values([first - step / 2])[0], x_values([last + step / 2])[0]


def _floor(at: datetime, granularity: str) -> datetime:
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if granularity == "day" else at


def _threshold_trace(
    x: Sequence[str], granularity: str, *, name: str, level: float, hover: str, meta: dict[str, Any]
) -> dict[str, Any]:
    x0, x1 = _edges(x, granularity)
    return {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": [x0, x1],
        "y": [level, level],
        "line": {"color": ALERT_COLOR, "width": 1.5, "dash": "dash"},
        "hovertemplate": f"{hover}<extra></extra>",
        "meta": meta,
    }


def _rule_traces(
    figure: dict[str, Any], metric: str, granularity: str, rule: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """A threshold line, or an anomaly rule's band (baseline ± sensitivity, per window)."""
    x = figure["data"][0]["x"] if figure["data"] else []
    if not x or rule["metric"] != metric:
        return []
    if metric in ADDITIVE_METRICS and rule["window"] != granularity:
        return []
    per = f" per {rule['window']}" if metric in ADDITIVE_METRICS else f", {rule['window']}ly"
    if rule["condition"] == "anomaly":
        if not rule["band"]:
            return []
        bx = x_values([start for start, _, _ in rule["band"]])
        low = [round(max(_plotted(metric, lo), 0.0), 6) for _, lo, _ in rule["band"]]
        high = [round(_plotted(metric, hi), 6) for _, _, hi in rule["band"]]
        name = f"{rule['name']}: normal band (median ± {rule['sensitivity']:g}σ{per})"
        meta = {"kind": "band", "rule": rule["name"], "url": rule["url"]}
        return [
            {
                "type": "scatter",
                "mode": "lines",
                "x": bx,
                "y": high,
                "line": {"width": 0, "color": ALERT_COLOR},
                "showlegend": False,
                "hoverinfo": "skip",
                "meta": meta,
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": name,
                "x": bx,
                "y": low,
                "fill": "tonexty",
                "fillcolor": "rgba(220,38,38,0.10)",
                "line": {"width": 0, "color": ALERT_COLOR},
                "hoverinfo": "skip",
                "meta": meta,
            },
        ]
    sign = ">" if rule["condition"] == "above" else "<"
    label = f"{sign} {_display(metric, rule['threshold'])}{per}"
    return [
        _threshold_trace(
            x,
            granularity,
            name=f"{rule['name']} ({label})",
            level=_plotted(metric, rule["threshold"]),
            hover=f"Alert threshold {label}: {rule['name']}",
            meta={"kind": "threshold", "rule": rule["name"], "url": rule["url"]},
        )
    ]


def _incident_overlay(figure: dict[str, Any], granularity: str, incidents: Sequence[Mapping[str, Any]]) -> None:
    """Shaded spans for the incidents, and a marker on each whose hover names the rule and the value
    and whose click opens the rule's incident history."""
    x = figure["data"][0]["x"] if figure["data"] else []
    if not x or not incidents:
        return
    step = timedelta(seconds=_STEP_SECONDS[granularity])
    lo, hi = _edges(x, granularity)
    shapes, marks, texts, urls = [], [], [], []
    for incident in incidents:
        first = _floor(incident["start"], granularity)
        last = _floor(incident["end"] - timedelta(microseconds=1), granularity)
        x0, x1 = x_values([first - step / 2])[0], x_values([max(first, last) + step / 2])[0]
        x0, x1 = max(x0, lo), min(x1, hi)
        if x0 >= x1:
            continue
        shapes.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": x0,
                "x1": x1,
                "y0": 0,
                "y1": 1,
                "fillcolor": "rgba(220,38,38,0.08)",
                "line": {"width": 0},
                "layer": "below",
            }
        )
        marks.append(max(x_values([first])[0], x[0]))
        state = "open" if incident["open"] else "resolved"
        metric = incident["metric"]
        compared = (
            f"threshold {_display(metric, incident['threshold'])}"
            if incident["threshold"] is not None
            else f"baseline {_display(metric, incident['baseline'])}"
        )
        texts.append(
            f"Incident ({state}): {incident['rule']}<br>{_display(metric, incident['value'])} vs {compared}"
            "<br>click to open the rule"
        )
        urls.append(incident["url"])
    if not marks:
        return
    layout = figure["layout"]
    layout["shapes"] = [*layout.get("shapes", []), *shapes]
    layout["yaxis2"] = {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True}
    figure["data"].append(
        {
            "type": "scatter",
            "mode": "markers",
            "name": "Incident",
            "yaxis": "y2",
            "x": marks,
            "y": [0.96] * len(marks),
            "marker": {"symbol": "triangle-down", "size": 12, "color": ALERT_COLOR},
            "text": texts,
            "customdata": urls,
            "hovertemplate": "%{text}<extra></extra>",
            "meta": {"kind": "incident"},
        }
    )


def _previous_trace(figure: dict[str, Any], metric: str, previous: Series) -> dict[str, Any] | None:
    """The previous period's values drawn over this one's buckets (dashed), each point carrying its own
    bucket start (customdata) so hover and drill-down name the real time."""
    x = figure["data"][0]["x"] if figure["data"] else []
    try:
        values = previous[metric] if previous.buckets else []
    except KeyError:  # a series without this metric (a page that adds its own fields): nothing to overlay
        values = []
    if not x or not values:
        return None
    n = min(len(x), len(values))
    unit = _unit_of(metric)
    y = _percent(values[:n]) if unit == "%" else list(values[:n])
    when = [b.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for b in previous.buckets[:n]]
    return {
        "type": "scatter",
        "mode": "lines",
        "name": "Previous period",
        "x": list(x[:n]),
        "y": _clean(y, unit),
        "customdata": when,
        "line": {"color": PREVIOUS_COLOR, "width": 2, "dash": "dash"},
        "hovertemplate": f"{UNITS[unit]['hover']} (previous: %{{customdata}})<extra>previous</extra>",
        "connectgaps": False,
        "meta": {"kind": "previous"},
    }


def _not_per_user(figure: dict[str, Any]) -> None:
    for trace in figure["data"]:
        trace["y"] = [None] * len(trace.get("y", []))
    figure["layout"]["showlegend"] = False
    _no_data_note(figure["layout"], NOT_PER_USER)


def decorate(
    figures: dict[str, dict[str, Any]],
    *,
    granularity: str,
    overlays: Mapping[str, Any],
    drill: Mapping[str, Any],
    previous: Series | None = None,
    per_user: bool = False,
) -> dict[str, dict[str, Any]]:
    """Add to a page's figures, in place: the rules in scope (thresholds, anomaly bands) and incidents on
    each figure of their metric, budgets on the month-to-date chart, the previous period (dashed) when
    asked, and what charts.js needs for drill-down (`drill`: the explorer URL of the page's filters,
    the bucket length and the page's range; per-trace filters in `meta.drill`).

    `overlays`: plain dicts, {"rules": [...], "incidents": [...], "budgets": [...]}.
    """
    for key, figure in figures.items():
        metric = FIGURE_METRICS.get(key)
        step = _STEP_SECONDS["day" if key == "mtd" else granularity]
        figure["drill"] = {**drill, "step_seconds": step}
        dimension = TRACE_FILTERS.get(key)
        for trace in figure["data"]:
            name = str(trace.get("name", ""))
            if dimension and name not in ("other", "none", "(none)"):
                value = name.removeprefix("HTTP ") if dimension == "http_status" else name
                # Both error charts count failed calls only, so their calls are the failed ones.
                errors_only = {"status": "error"} if key in ("by_type", "by_status") else {}
                trace["meta"] = {"drill": {dimension: value, **errors_only}}
        if per_user and key not in PER_USER_FIGURES:
            _not_per_user(figure)
            continue
        extra: list[dict[str, Any]] = []
        if key == "mtd":
            x = figure["data"][0]["x"] if figure["data"] else []
            for budget in overlays.get("budgets", []):
                if budget["period"] == "month" and x:
                    extra.append(
                        _threshold_trace(
                            [x[0], figure["data"][-1]["x"][-1]],
                            "day",
                            name=f"Budget {budget['name']} ({usd(budget['limit_usd'], places=2)} a month)",
                            level=budget["limit_usd"],
                            hover=f"Budget {budget['name']}: {usd(budget['limit_usd'], places=2)} a month",
                            meta={"kind": "budget", "budget": budget["name"], "url": budget["url"]},
                        )
                    )
        elif metric:
            if previous is not None:  # on the stacked spend charts: the previous total
                trace = _previous_trace(figure, metric, previous)
                if trace:
                    extra.append(trace)
            for rule in overlays.get("rules", []):
                extra += _rule_traces(figure, metric, granularity, rule)
            if metric == "cost_usd" and granularity == "day":
                x = figure["data"][0]["x"] if figure["data"] else []
                for budget in overlays.get("budgets", []):
                    if budget["period"] == "day" and x:
                        extra.append(
                            _threshold_trace(
                                x,
                                "day",
                                name=f"Budget {budget['name']} ({usd(budget['limit_usd'], places=2)} a day)",
                                level=budget["limit_usd"],
                                hover=f"Budget {budget['name']}: {usd(budget['limit_usd'], places=2)} a day",
                                meta={"kind": "budget", "budget": budget["name"], "url": budget["url"]},
                            )
                        )
        figure["data"].extend(extra)
        if metric:
            _incident_overlay(figure, granularity, [i for i in overlays.get("incidents", []) if i["metric"] == metric])
        if len(figure["data"]) > 1:
            figure["layout"]["showlegend"] = True
            figure["layout"]["margin"]["t"] = 36
    return figures
