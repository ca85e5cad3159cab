"""core.money.usd, the one money formatter: half up as a bill rounds, on the number that was meant."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.money import usd


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2.045, "$2.05"),  # a float holds 2.04499...: f"{x:.2f}" gave $2.04
        (Decimal("2.045"), "$2.05"),  # Decimal's own formatting rounds half to even: $2.04
        (Decimal("2.035"), "$2.04"),
        (0.05, "$0.05"),  # cents below a dollar too, not the pages' four places
        (0, "$0.00"),
        (-3.455, "-$3.46"),
        (1234.565, "$1,234.57"),  # thousands separated, cents kept (not the pages' whole dollars)
        (Decimal("1234567.891"), "$1,234,567.89"),
        ("6.105", "$6.11"),
    ],
)
def test_two_places_round_half_up_and_keep_thousands_separators(value, shown):
    assert usd(value, places=2) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [(2.045, "$2.05"), (0.12345, "$0.1235"), (1234.5, "$1,235"), (0, "$0.00"), (-0.5, "-$0.5000")],
)
def test_without_places_the_pages_scale(value, shown):
    assert usd(value) == shown
