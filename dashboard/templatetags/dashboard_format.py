"""Number formatting for tiles and tables: money, percentages, latencies, counts.

A missing value (None: no calls to take a rate or latency of) renders as an em dash,
never as 0.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import template

from core import money

register = template.Library()
DASH = "—"


@register.filter
def usd(value: Any) -> str:
    """Money on the pages' scale, rounded half up as a bill rounds it ($2.045 is $2.05): core.money
    owns the rounding, which alerts share."""
    if value is None or value == "":
        return DASH
    return money.usd(value)


@register.filter
def cents(value: Any) -> str:
    """Money to the cent whatever its size ($1,234.50), for amounts a team sets and bills by
    (budgets), rounded half up as `usd` is."""
    if value is None or value == "":
        return DASH
    return money.usd(value, places=2)


@register.filter
def pct(value: Any) -> str:
    """A fraction as a percentage: 0.0312 -> 3.1%."""
    if value is None or value == "":
        return DASH
    v = float(value) * 100
    return f"{v:.2f}%" if 0 < abs(v) < 1 else f"{v:.1f}%"


@register.filter
def ms(value: Any) -> str:
    if value is None or value == "":
        return DASH
    v = float(value)
    if v >= 600_000:
        return f"{v / 60_000:,.1f} min"
    return f"{v / 1000:,.2f} s" if v >= 10_000 else f"{v:,.0f} ms"


@register.filter
def count(value: Any) -> str:
    if value is None or value == "":
        return DASH
    return f"{int(value):,}"


@register.filter
def tokens(value: Any) -> str:
    if value is None or value == "":
        return DASH
    v = int(value)
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if abs(v) >= size:
            return f"{v / size:.1f}{suffix}"
    return str(v)


@register.filter
def plain(value: Any) -> str:
    """A stored value as stored: ISO 8601 UTC times, lowercase booleans (the event detail page)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@register.filter
def metric(value: Any, unit: str) -> str:
    """Format by a KPI's unit: count | usd | ms | pct."""
    return {"count": count, "usd": usd, "ms": ms, "pct": pct, "tokens": tokens}[unit](value)


@register.filter
def signed_pct(value: Any) -> str:
    """A relative change: 0.123 -> 12.3% (the arrow carries the sign)."""
    if value is None or value == "":
        return DASH
    v = abs(float(value)) * 100
    return f"{v:,.0f}%" if v >= 100 else f"{v:.1f}%"


@register.simple_tag
def query(filters: Any, **overrides: str) -> str:
    """The current filters' query string with some parameters replaced: `{% query filters model="x" %}`."""
    from urllib.parse import urlencode

    params = filters.params()
    for name, value in overrides.items():
        if value in ("", None):
            params.pop(name, None)
        else:
            params[name] = str(value)
    return urlencode(params)


@register.simple_tag
def drill(filters: Any, dimension: str, value: str) -> str:
    """The query string that narrows the current filters to one value of a dimension."""
    return query(filters, **{dimension: value})


@register.simple_tag
def calls(filters: Any, start: Any = None, end: Any = None, **extra: Any) -> str:
    """The events explorer URL of the calls behind a row: the page's range and filters plus `extra`
    (`{% calls filters model=row.name %}`, `{% calls filters status="error" error_type=name %}`)."""
    from urllib.parse import urlencode

    from django.urls import reverse

    params = filters.calls_params(start, end, **{k: str(v) for k, v in extra.items() if v not in ("", None)})
    return f"{reverse('dashboard:events')}?{urlencode(params)}"


@register.simple_tag
def calls_by(filters: Any, dimension: str, value: str) -> str:
    """The calls behind one value of a dimension (a breakdown row)."""
    return calls(filters, **{dimension: value})
