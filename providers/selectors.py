"""Reads: a project's provider connection (minus its secret) and the reconciliation of the
provider's figures with Tally's.

Tally's side comes from the daily aggregates through rollups.selectors (never raw events).
Both sides' model names go through pricing's aliases (`model_canonical`), so the provider's
"claude-haiku-4-5" and an event's "claude-haiku-4-5-20251001" are one row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pricing.selectors import model_canonical
from providers.models import ProviderConnection
from rollups.selectors import MetricsQuery, metrics_query

# Provider costs are in fractional cents and Tally's to 1e-10 USD: below a cent apart is "equal".
COST_TOLERANCE_USD = Decimal("0.01")
NO_MODEL = "(no model)"  # spend the provider attributes to no model (e.g. code execution)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def connection_of(*, project_id: int) -> ProviderConnection | None:
    return ProviderConnection.objects.select_related("project").filter(project_id=project_id).first()


def connection_as_dict(connection: ProviderConnection) -> dict[str, Any]:
    """CONTRACT §7: the connection minus the secret (only its last 4 characters)."""
    return {
        "project": connection.project.slug,
        "provider": connection.provider,
        "admin_key_last4": connection.admin_key_last4,
        "api_key_ids": list(connection.api_key_ids),
        "workspace_ids": list(connection.workspace_ids),
        "last_synced_at": _iso(connection.last_synced_at),
        "last_error": connection.last_error or None,
        "last_error_at": _iso(connection.last_error_at),
        "covered_from": connection.covered_from.isoformat() if connection.covered_from else None,
        "covered_to": connection.covered_to.isoformat() if connection.covered_to else None,
    }


@dataclass
class Side:
    """One side's figures for a (day, model): the provider's report or Tally's aggregates."""

    requests: int = 0
    uncached_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)

    TOKEN_FIELDS = (
        "uncached_input_tokens",
        "cache_read_input_tokens",
        "cache_creation_5m_input_tokens",
        "cache_creation_1h_input_tokens",
        "output_tokens",
    )

    def add(self, other: Side) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def tokens(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in self.TOKEN_FIELDS)

    def as_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "cost_usd"},
            "cost_usd": float(self.cost_usd),
        }


def _coverage(tally: Decimal, provider: Decimal) -> float | None:
    return round(float(tally / provider), 3) if provider > 0 else None


@dataclass
class ReconciliationRow:
    day: date
    model: str  # the provider's name when it reported the model, else Tally's
    provider: Side
    tally: Side
    tally_models: list[str] = field(default_factory=list)  # Tally's own names, when they differ

    @property
    def coverage(self) -> float | None:
        return _coverage(self.tally.cost_usd, self.provider.cost_usd)

    @property
    def unmetered_cost_usd(self) -> Decimal:
        return max(Decimal(0), self.provider.cost_usd - self.tally.cost_usd)

    @property
    def cost_gap_usd(self) -> Decimal:
        return self.provider.cost_usd - self.tally.cost_usd

    @property
    def verdict(self) -> str:
        """`match`; `price` (tokens agree, cost doesn't: a price difference); `unmetered` (Tally saw
        fewer tokens: calls that sent no telemetry); `over` (Tally saw more than the provider)."""
        provider, tally = self.provider.tokens(), self.tally.tokens()
        if provider == tally:
            return "match" if abs(self.cost_gap_usd) < COST_TOLERANCE_USD else "price"
        if any(p > t for p, t in zip(provider, tally, strict=True)):
            return "unmetered"
        return "over"

    @property
    def display_model(self) -> str:
        return self.model or NO_MODEL

    def as_dict(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "model": self.model,
            "provider": self.provider.as_dict(),
            "tally": self.tally.as_dict(),
            "coverage": self.coverage,
            "unmetered_cost_usd": float(self.unmetered_cost_usd),
        }


@dataclass
class Reconciliation:
    start: date
    end: date  # inclusive
    connection: ProviderConnection | None
    rows: list[ReconciliationRow]

    @property
    def provider_cost_usd(self) -> Decimal:
        return sum((r.provider.cost_usd for r in self.rows), Decimal(0))

    @property
    def tally_cost_usd(self) -> Decimal:
        return sum((r.tally.cost_usd for r in self.rows), Decimal(0))

    @property
    def unmetered_cost_usd(self) -> Decimal:
        # Per row, then summed: Tally over-counting one model must not hide another's unmetered spend.
        return sum((r.unmetered_cost_usd for r in self.rows), Decimal(0))

    @property
    def coverage(self) -> float | None:
        return _coverage(self.tally_cost_usd, self.provider_cost_usd)

    @property
    def unmetered_models(self) -> list[tuple[str, Decimal]]:
        """Models with unmetered traffic in the range, largest unmetered spend first."""
        by_model: dict[str, Decimal] = {}
        for row in self.rows:
            if row.verdict == "unmetered":
                by_model[row.display_model] = by_model.get(row.display_model, Decimal(0)) + row.unmetered_cost_usd
        return sorted(by_model.items(), key=lambda item: (-item[1], item[0]))

    @property
    def price_difference_rows(self) -> list[ReconciliationRow]:
        return [r for r in self.rows if r.verdict == "price"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "synced_at": _iso(self.connection.last_synced_at) if self.connection else None,
            "rows": [r.as_dict() for r in self.rows],
            "totals": {
                "provider_cost_usd": float(self.provider_cost_usd),
                "tally_cost_usd": float(self.tally_cost_usd),
                "coverage": self.coverage,
                "unmetered_cost_usd": float(self.unmetered_cost_usd),
            },
        }


def _tally_side(row: Any) -> Side:
    return Side(
        requests=row.sums.get("requests", 0),
        uncached_input_tokens=row.sums.get("input_tokens", 0),
        cache_read_input_tokens=row.sums.get("cache_read_input_tokens", 0),
        cache_creation_5m_input_tokens=row.sums.get("cache_write_5m_tokens", 0),
        cache_creation_1h_input_tokens=row.sums.get("cache_write_1h_tokens", 0),
        output_tokens=row.sums.get("output_tokens", 0),
        cost_usd=row.cost_usd,
    )


def reconciliation(*, project_id: int, start: date, end: date) -> Reconciliation:
    """Per day and model of [start, end] (inclusive) that the provider's figures cover: its
    requests, tokens and cost beside Tally's. Nothing for days never synced (no guess of zero)."""
    connection = connection_of(project_id=project_id)
    if connection is None or connection.covered_from is None or connection.covered_to is None:
        return Reconciliation(start=start, end=end, connection=connection, rows=[])
    first, last = max(start, connection.covered_from), min(end, connection.covered_to)
    rows: dict[tuple[date, str], ReconciliationRow] = {}
    if first > last:
        return Reconciliation(start=start, end=end, connection=connection, rows=[])

    for stored in connection.days.filter(day__gte=first, day__lte=last).order_by("day", "model"):
        key = (stored.day, model_canonical(model=stored.model))
        side = Side(**{f.name: getattr(stored, f.name) for f in fields(Side)})
        row = rows.get(key)
        if row is None:
            rows[key] = ReconciliationRow(day=stored.day, model=stored.model, provider=side, tally=Side())
        else:
            row.provider.add(side)

    result = metrics_query(
        MetricsQuery(
            project_ids=[project_id],
            start=datetime(first.year, first.month, first.day, tzinfo=UTC),
            end=datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1),
            granularity="day",
            group_by=["model"],
        ),
        with_as_of=False,
    )
    for aggregate in result.series:
        assert aggregate.bucket is not None
        tally_model = aggregate.group["model"]
        day = aggregate.bucket.astimezone(UTC).date()
        key = (day, model_canonical(model=tally_model))
        row = rows.get(key)
        if row is None:
            row = rows[key] = ReconciliationRow(day=day, model=tally_model, provider=Side(), tally=Side())
        row.tally.add(_tally_side(aggregate))
        if tally_model != row.model and tally_model not in row.tally_models:
            row.tally_models.append(tally_model)
    ordered = sorted(rows.values(), key=lambda r: (r.day, r.model))
    return Reconciliation(start=start, end=end, connection=connection, rows=ordered)
