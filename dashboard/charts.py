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
from datetime import UTC, datetime
from typing import Any, Protocol

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


def _layout(*, y_title: str, unit: str, granularity: str, legend: bool, stacked: bool = False,
            log: bool = False) -> dict[str, Any]:
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
    layout["annotations"] = [{
        "text": message, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
        "font": {"size": 13, "color": "#64748b"},
    }]


def _whole_ticks(layout: dict[str, Any], traces: Mapping[str, Sequence[Number]], *, stacked: bool,
                 unit: str) -> None:
    """Counts of a few don't get ticks at 0.5: below 10, tick every whole number."""
    if unit not in ("requests", "tokens"):
        return
    columns = list(zip(*traces.values(), strict=True)) or [()]
    peak = max((sum(v or 0 for v in col) if stacked else max((v or 0 for v in col), default=0)) for col in columns)
    if peak < 10:
        layout["yaxis"].update(dtick=1, tickformat=",d")


def _has_values(traces: Mapping[str, Sequence[Number]]) -> bool:
    return any(v for values in traces.values() for v in values)


def line_figure(buckets: Sequence[datetime], traces: Mapping[str, Sequence[Number]], *, unit: str, y_title: str,
                granularity: str, colors: Mapping[str, str] | None = None,
                empty_message: str = "No calls in this range", log: bool = False) -> dict[str, Any]:
    """One line per trace; `None` values are gaps."""
    x = x_values(buckets)
    data = []
    for i, (name, values) in enumerate(traces.items()):
        color = (colors or {}).get(name, PALETTE[i % len(PALETTE)])
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": name, "x": x, "y": _clean(values, unit),
            "line": {"color": color, "width": 2}, "marker": {"color": color, "size": 4},
            "hovertemplate": UNITS[unit]["hover"], "connectgaps": False,
        })
    layout = _layout(y_title=y_title, unit=unit, granularity=granularity, legend=len(data) > 1, log=log)
    if not _has_values(traces):
        _no_data_note(layout, empty_message)
    return {"data": data, "layout": layout}


def bar_figure(buckets: Sequence[datetime], traces: Mapping[str, Sequence[Number]], *, unit: str, y_title: str,
               granularity: str, stacked: bool = True, empty_message: str = "No calls in this range") -> dict[str, Any]:
    """Bars per bucket, one trace per name (stacked by default)."""
    x = x_values(buckets)
    data = [
        {"type": "bar", "name": name, "x": x, "y": _clean(values, unit),
         "marker": {"color": PALETTE[i % len(PALETTE)]}, "hovertemplate": UNITS[unit]["hover"]}
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


def latency_figure(buckets: Sequence[datetime], p50: Sequence[Number], p95: Sequence[Number],
                   p99: Sequence[Number], *, granularity: str) -> dict[str, Any]:
    return line_figure(buckets, {"P50": p50, "P95": p95, "P99": p99}, unit="ms", y_title="Latency (ms, log scale)",
                       granularity=granularity, colors=LATENCY_COLORS, log=True)


def rate_figure(buckets: Sequence[datetime], rates: Mapping[str, Sequence[Number]], *, y_title: str,
                granularity: str) -> dict[str, Any]:
    """Rates given as fractions, drawn as percentages."""
    return line_figure(buckets, {name: _percent(values) for name, values in rates.items()}, unit="%",
                       y_title=y_title, granularity=granularity)


def error_rate_figure(buckets: Sequence[datetime], error_rate: Sequence[Number], *,
                      granularity: str) -> dict[str, Any]:
    return rate_figure(buckets, {"Error rate": error_rate}, y_title="Error rate (%)", granularity=granularity)


def cache_hit_rate_figure(buckets: Sequence[datetime], hit_rate: Sequence[Number], *,
                          granularity: str) -> dict[str, Any]:
    return rate_figure(buckets, {"Cache hit rate": hit_rate}, y_title="Cache hit rate (%)", granularity=granularity)


def tokens_figure(buckets: Sequence[datetime], tokens: Mapping[str, Sequence[Number]], *,
                  granularity: str) -> dict[str, Any]:
    return bar_figure(buckets, tokens, unit="tokens", y_title="Tokens", granularity=granularity, stacked=True)


def stacked_figure(buckets: Sequence[datetime], stacks: Mapping[str, Sequence[Number]], *, unit: str, y_title: str,
                   granularity: str, empty_message: str = "No calls in this range") -> dict[str, Any]:
    """Stacked bars of a total split by a dimension (model, service, error type, ...)."""
    if not stacks:
        stacks = {"none": [0] * len(buckets)}
    return bar_figure(buckets, stacks, unit=unit, y_title=y_title, granularity=granularity, stacked=True,
                      empty_message=empty_message)


def month_projection_figure(days: Sequence[datetime], cumulative_usd: Sequence[Number], *, last_day: datetime,
                            projected_usd: float) -> dict[str, Any]:
    """Cumulative spend per day of the month so far, and a dashed linear projection to its last day."""
    x = x_values(days)
    data: list[dict[str, Any]] = [{
        "type": "scatter", "mode": "lines+markers", "name": "Spend to date", "x": x,
        "y": _clean(cumulative_usd, "USD"), "line": {"color": PALETTE[0], "width": 2},
        "marker": {"color": PALETTE[0], "size": 5}, "hovertemplate": UNITS["USD"]["hover"],
    }]
    if days:
        data.append({
            "type": "scatter", "mode": "lines", "name": "Projection (linear)",
            "x": [x[-1], x_values([last_day])[0]], "y": _clean([cumulative_usd[-1], projected_usd], "USD"),
            "line": {"color": PALETTE[2], "width": 2, "dash": "dash"}, "hovertemplate": UNITS["USD"]["hover"],
        })
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
        "latency": latency_figure(s.buckets, s["latency_p50_ms"], s["latency_p95_ms"], s["latency_p99_ms"],
                                  granularity=granularity),
        "error_rate": error_rate_figure(s.buckets, s["error_rate"], granularity=granularity),
        "cache_hit_rate": cache_hit_rate_figure(s.buckets, s["cache_hit_rate"], granularity=granularity),
        "tokens": tokens_figure(s.buckets, {
            "Input": s["input_tokens"], "Output": s["output_tokens"], "Cache read": s["cache_read_input_tokens"],
            "Cache write": s["cache_creation_input_tokens"]}, granularity=granularity),
    }


def ttft_figure(buckets: Sequence[datetime], p50: Sequence[Number], p95: Sequence[Number], *,
                granularity: str) -> dict[str, Any]:
    """Time to first token of streamed online calls; gaps where no call reported one."""
    return line_figure(buckets, {"P50": p50, "P95": p95}, unit="ms", y_title="Time to first token (ms)",
                       granularity=granularity, colors=LATENCY_COLORS,
                       empty_message="No streamed call reported time to first token")


def batch_turnaround_figure(buckets: Sequence[datetime], average_ms: Sequence[Number], *,
                            granularity: str) -> dict[str, Any]:
    """Average Message Batches turnaround, in minutes (results come back minutes to hours later)."""
    minutes = [None if v is None else float(v) / 60_000 for v in average_ms]
    return line_figure(buckets, {"Average turnaround": minutes}, unit="min", y_title="Batch turnaround (min)",
                       granularity=granularity, colors={"Average turnaround": PALETTE[2]},
                       empty_message="No Message Batches calls in this range")


def latency_figures(s: Series, *, granularity: str) -> dict[str, dict[str, Any]]:
    """The Latency page: online calls' percentiles, TTFT and average; batch turnaround apart."""
    return {
        "percentiles": latency_figure(s.buckets, s["latency_p50_ms"], s["latency_p95_ms"], s["latency_p99_ms"],
                                      granularity=granularity),
        "ttft": ttft_figure(s.buckets, s["ttft_p50_ms"], s["ttft_p95_ms"], granularity=granularity),
        "average": line_figure(s.buckets, {"Average": s["latency_avg_ms"]}, unit="ms",
                               y_title="Average latency (ms)", granularity=granularity),
        "batch": batch_turnaround_figure(s.buckets, s["batch_latency_avg_ms"], granularity=granularity),
    }


def errors_figures(s: Series, by_type: Mapping[str, Sequence[Number]], by_status: Mapping[str, Sequence[Number]],
                   *, granularity: str, headroom: Mapping[str, Sequence[Number]] | None = None,
                   rate_limited: Sequence[int] | None = None) -> dict[str, dict[str, Any]]:
    return {
        "ratelimit": ratelimit_figure(s.buckets, headroom or {}, rate_limited or [0] * len(s.buckets),
                                      granularity=granularity),
        "error_rate": error_rate_figure(s.buckets, s["error_rate"], granularity=granularity),
        "by_type": stacked_figure(s.buckets, by_type, unit="requests", y_title="Errors",
                                  granularity=granularity, empty_message="No errors in this range"),
        "by_status": stacked_figure(s.buckets, {f"HTTP {code}": v for code, v in by_status.items()},
                                    unit="requests", y_title="Calls", granularity=granularity,
                                    empty_message="No HTTP statuses reported in this range"),
    }


def ratelimit_figure(buckets: Sequence[datetime], headroom: Mapping[str, Sequence[Number]],
                     rate_limited: Sequence[int], *, granularity: str) -> dict[str, Any]:
    """Rate-limit headroom (%) per model over time, with the buckets that had HTTP 429s marked
    on the 0% line (how close the limit came, and when it was hit)."""
    figure = line_figure(buckets, {name: _percent(values) for name, values in headroom.items()}, unit="%",
                         y_title="Lowest headroom (%)", granularity=granularity,
                         empty_message="No call reported rate-limit headers in this range")
    hits = [(x, n) for x, n in zip(x_values(buckets), rate_limited, strict=True) if n]
    if hits:
        figure["data"].append({
            "type": "scatter", "mode": "markers", "name": "HTTP 429", "x": [x for x, _ in hits], "y": [0] * len(hits),
            "text": [f"{n:,} rate-limited call{'s' if n != 1 else ''}" for _, n in hits],
            "marker": {"symbol": "x", "size": 11, "color": "#dc2626"}, "hovertemplate": "%{text}<extra></extra>",
        })
        figure["layout"]["showlegend"] = True
        figure["layout"]["margin"]["t"] = 36
        figure["layout"].pop("annotations", None)
    figure["layout"]["yaxis"]["range"] = [-5, 105]
    return figure


def cache_figures(s: Series, *, granularity: str) -> dict[str, dict[str, Any]]:
    return {
        "rates": rate_figure(s.buckets, {"Cache hit rate": s["cache_hit_rate"],
                                         "Cached share of prompt tokens": s["cached_share"]},
                             y_title="Share (%)", granularity=granularity),
        "savings": bar_figure(s.buckets, {"Saved": s["cache_savings_usd"]}, unit="USD",
                              y_title="Saved by caching (USD)", granularity=granularity),
        "writes": stacked_figure(s.buckets, {"5-minute TTL": s["cache_write_5m_tokens"],
                                             "1-hour TTL": s["cache_write_1h_tokens"]}, unit="tokens",
                                 y_title="Cache write tokens", granularity=granularity,
                                 empty_message="No cache writes in this range"),
    }


def spend_figures(buckets: Sequence[datetime], by_model: Mapping[str, Sequence[Number]],
                  by_service: Mapping[str, Sequence[Number]], *, granularity: str) -> dict[str, dict[str, Any]]:
    return {
        "by_model": stacked_figure(buckets, by_model, unit="USD", y_title="Spend (USD)", granularity=granularity),
        "by_service": stacked_figure(buckets, by_service, unit="USD", y_title="Spend (USD)",
                                     granularity=granularity),
    }
