"""The money filter rounds as a bill does: half up, on the number that was meant."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dashboard.templatetags.dashboard_format import DASH, cents, usd


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2.045, "$2.05"),  # a float holds 2.04499...: formatting the float gave $2.04
        (Decimal("2.045"), "$2.05"),
        (1.005, "$1.01"),
        (-3.455, "-$3.46"),
        (0, "$0.00"),
        (0.12345, "$0.1235"),  # under a dollar: four places
        (Decimal("0.0000500000"), "$0.0001"),
        (1234.5, "$1,235"),  # a thousand and more: whole dollars
        (None, DASH),
        ("", DASH),
    ],
)
def test_usd_rounds_half_up(value, shown):
    assert usd(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("1234.5"), "$1,234.50"),  # budgets: to the cent at any size
        (Decimal("0.125"), "$0.13"),
        (2.045, "$2.05"),
        (0, "$0.00"),
        (None, DASH),
    ],
)
def test_cents_keeps_the_cents_at_any_size(value, shown):
    assert cents(value) == shown
