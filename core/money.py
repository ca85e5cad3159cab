"""Money as people read it: `usd` is the one formatter of dollar amounts, for the pages (the
dashboard's `usd` filter) and for what alerts say (emails, channel messages, budget and per-user
rule messages).

It rounds half up, as a bill does ($2.045 is $2.05), through Decimal: a float holds 2.045 as
2.04499..., so formatting the float (`f"{x:.2f}"`) rounds it down, and Decimal's own formatting
rounds half to even (Decimal("2.045") would print $2.04 too). A float goes through its shortest
repr (str), which is the number that was meant.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def usd(value: Decimal | float | int | str, *, places: int | None = None) -> str:
    """`-$1,234.50`: the sign before the dollar sign, thousands separated, `places` decimal places
    (alerts print cents: `places=2`). Without `places`, the pages' scale: whole dollars from $1,000
    ($1,235), cents from $1 ($2.05) and for zero ($0.00), four places under a dollar ($0.1235)."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    sign = "-" if d < 0 else ""
    d = abs(d)
    if places is None:
        places = 0 if d >= 1000 else 2 if d >= 1 or d == 0 else 4
    return f"{sign}${d.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP):,.{places}f}"
