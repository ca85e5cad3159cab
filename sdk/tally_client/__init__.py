"""tally_client: send Claude API usage, cost and latency telemetry to a Tally server.

    from tally_client import Tally
    tally = Tally("https://tally.example.com", "tly_...", service="search-api")
    client = tally.instrument(anthropic.Anthropic())

See README.md. No dependency besides the standard library; `anthropic` is imported only by
`Tally.instrument()`.
"""

from __future__ import annotations

from tally_client._client import Tally
from tally_client.budget import BudgetExceeded

__all__ = ["BudgetExceeded", "Tally", "__version__"]
__version__ = "0.1.0"
