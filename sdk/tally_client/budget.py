"""Budget enforcement: the seam, not the behaviour (yet).

`BudgetExceeded` is what a call will raise, *before* reaching the API, once the client can ask
Tally whether a budget covering it is spent (CONTRACT §5, `GET /api/v1/budgets/status`, not built
yet). The check belongs in `tally_client._anthropic._Call.begin`, the one place every
instrumented call passes through before the request; it must use a cached status (refreshed in
the background) so that it adds no network round trip to the call. Nothing raises it today.
"""

from __future__ import annotations


class BudgetExceeded(Exception):  # noqa: N818 - the name says what happened, as in the issue
    """A Tally budget covering this call (by service/feature) is exceeded."""

    def __init__(self, message: str, *, budget: str | None = None, limit_usd: float | None = None,
                 spent_usd: float | None = None) -> None:
        super().__init__(message)
        self.budget = budget
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
