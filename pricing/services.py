"""Price one LLM call: the project's price overrides first, then genai-prices' bundled table.

Invariants:
- A model (or provider) genai-prices doesn't know, with no matching override, is *unpriced*:
  `cost_usd is None`, `source == "unpriced"`. It is never priced at $0.
- genai-prices is used offline, from the snapshot bundled with the installed version. Nothing
  here starts `UpdatePrices` or touches the network, so prices only change when the package
  is upgraded (`PRICES_VERSION` goes into every `source`) and stored costs only change through
  `manage.py reprice`.
- Token counts follow Anthropic's usage object: `input_tokens` EXCLUDES cache reads and writes.
  (genai-prices' `Usage.input_tokens` includes them: see `_PROBES` and `genai_usage`.)
- Costs are exact sums of tokens x USD-per-MTok, quantized once, at the end, to 1e-10 USD (the
  `numeric(20,10)` column), rounding half to even. No floats anywhere. When every rate of a card is
  a whole number of 1e-4 USD/MTok (i.e. of 1e-10 USD per token: every Claude price is), the sum
  is done in integers of 1e-10 USD, which is the same figure as the Decimal sum, quantized.
- `Pricer` runs exactly one query (in `__init__`), so ingest prices a whole batch without N+1.
- The result depends only on the arguments and the overrides loaded at construction.

Why the rate cards: `genai_prices.calc_price` costs ~80 µs a call and almost all of it is
`ModelPrice.calc_price` re-resolving its unit registry on every call; ingest prices every
event. So, per genai-prices `ModelPrice` (i.e. per model and dated price period), we ask that
`ModelPrice.calc_price` once for the USD-per-MTok of each Anthropic token category in each
long-context price region and keep the figures (`_RateCard`). Per call that leaves a cached
model lookup, genai-prices' own `ModelInfo.get_prices(timestamp)` (~0.1-0.4 µs) and five
integer multiplications. A Pricer also remembers, per (provider, model, UTC day), which card
genai-prices picked, for models whose prices change only by date (every Claude model), so a
batch of events of one model and day resolves its card once. tests/pricing/test_services.py
checks the cards against `genai_prices.calc_price` exactly, over every Anthropic model, date
period and tier.
"""

from __future__ import annotations

import bisect
import functools
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import genai_prices
from django.db import transaction
from genai_prices.types import ModelInfo, ModelPrice, StartDateConstraint, TieredPrices

from core.caches import process_cache
from core.timeutil import utc_day_number
from pricing.models import PriceOverride

if TYPE_CHECKING:
    from projects.models import Project

# The token counts of one call, named as in Anthropic's usage object (`input_tokens` excludes the
# cache; `cache_creation_input_tokens` is all cache writes), then those writes split by TTL as
# they are priced. An event, every aggregate row and the query API carry them in this order.
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
)

PRICES_VERSION = f"genai-prices {genai_prices.__version__}"
UNPRICED = "unpriced"
DEFAULT_PROVIDER = "anthropic"

# Anthropic's published cache multipliers of the base input price (pricing page, "Prompt
# caching"), used when an override leaves a cache price empty.
DEFAULT_CACHE_READ_MULTIPLIER = Decimal("0.1")
DEFAULT_CACHE_WRITE_5M_MULTIPLIER = Decimal("1.25")
DEFAULT_CACHE_WRITE_1H_MULTIPLIER = Decimal("2")
# Message Batches API: "50% off both input and output tokens", and the cache multipliers stack
# on top, so it is 0.5x of the whole standard cost, long-context tiers included. We apply it
# ourselves instead of genai-prices' `price_context={"processing": "batch"}` because 0.2.3's
# batch variants mostly start on 2026-10-14 ("earlier batch history is not modelled"): before
# that date its batch context silently returns the standard price.
ANTHROPIC_BATCH_MULTIPLIER = Decimal("0.5")

_COST_QUANTUM = Decimal("1e-10")  # ingest_event.cost_usd is numeric(20, 10)
_MTOK = 1_000_000
_ZERO = Decimal(0)
_HALF = Decimal("0.5")
# One unit of the integer path: 1e-10 USD, i.e. 1e-4 USD per MTok for a per-token rate.
_UNITS_PER_USD = 10**10
_UNITS_PER_USD_PER_MTOK = 10**4
_UNIT = Decimal("1E-10")
_ZERO_UNITS = Decimal(0) * _UNIT  # Decimal('0E-10'), as quantize gives


@dataclass(frozen=True)
class PriceResult:
    cost_usd: Decimal | None  # None means unpriced (model unknown): NEVER 0 for unknown models
    source: str  # e.g. "genai-prices 0.2.3:claude-sonnet-4-6", "override:12", "unpriced"
    # What the cache saved on this call: the same tokens priced as plain input, minus the real
    # cost (reads save, write premiums cost). Negative when writes outweigh reads. None if unpriced.
    cache_savings_usd: Decimal | None = None


_UNPRICED_RESULT = PriceResult(cost_usd=None, source=UNPRICED)


@dataclass(frozen=True, slots=True)
class _Rates:
    """USD per million tokens of each Anthropic usage category, plus any flat per-call charge."""

    input: Decimal  # uncached input only
    cache_read: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    output: Decimal
    per_call: Decimal = _ZERO  # USD; zero for every Claude model, kept so the card stays exact
    # The same rates in integer units of 1e-10 USD per token (per_call in 1e-10 USD), when every
    # one of them is whole in those units; None sends pricing down the Decimal path.
    units: tuple[int, int, int, int, int, int] | None = None

    def cost(self, input_tokens: int, cache_read: int, write_5m: int, write_1h: int, output_tokens: int) -> Decimal:
        total = (
            input_tokens * self.input
            + cache_read * self.cache_read
            + write_5m * self.cache_write_5m
            + write_1h * self.cache_write_1h
            + output_tokens * self.output
        )
        return total.scaleb(-6) + self.per_call  # scaleb: exact division by 1e6


def _with_units(rates: _Rates) -> _Rates:
    """`rates` with `units` filled in when the integer path is exact for them."""
    scaled = [
        r * _UNITS_PER_USD_PER_MTOK
        for r in (rates.input, rates.cache_read, rates.cache_write_5m, rates.cache_write_1h, rates.output)
    ]
    scaled.append(rates.per_call * _UNITS_PER_USD)
    if any(v != v.to_integral_value() for v in scaled):
        return rates
    i, cr, w5, w1, o, pc = (int(v) for v in scaled)
    return _Rates(
        rates.input,
        rates.cache_read,
        rates.cache_write_5m,
        rates.cache_write_1h,
        rates.output,
        rates.per_call,
        (i, cr, w5, w1, o, pc),
    )


def _half_even(units: int) -> int:
    """units / 2 rounded half to even: what Decimal's quantize does to an exact x 0.5."""
    half, odd = divmod(units, 2)
    return half + 1 if odd and half & 1 else half


def _units_cost_and_savings(
    units: tuple[int, int, int, int, int, int],
    input_tokens: int,
    cache_read: int,
    write_5m: int,
    write_1h: int,
    output_tokens: int,
    batch: bool,
) -> tuple[int, int]:
    """`_cost_and_savings` (x 0.5 for batch) in integers of 1e-10 USD; exact, already quantized."""
    r_in, r_read, r_5m, r_1h, r_out, per_call = units
    rest = output_tokens * r_out + per_call
    cost = input_tokens * r_in + cache_read * r_read + write_5m * r_5m + write_1h * r_1h + rest
    if cache_read or write_5m or write_1h:
        savings = (input_tokens + cache_read + write_5m + write_1h) * r_in + rest - cost
    else:
        savings = 0
    if batch:
        return _half_even(cost), _half_even(savings)
    return cost, savings


def _priced_units(
    rates: _Rates,
    batch_multiplier: Decimal | None,
    input_tokens: int,
    cache_read: int,
    write_5m: int,
    write_1h: int,
    output_tokens: int,
) -> tuple[int, int]:
    """(cost, cache savings) of one call at `rates`, in integer units of 1e-10 USD, x
    `batch_multiplier` for a batch call (None otherwise). In integers when the rates allow and a
    batch discount is exactly half (`_half_even` rounds as quantize does), else in Decimal,
    quantized once at the end: the same figure either way."""
    if rates.units is not None and (batch_multiplier is None or batch_multiplier == _HALF):
        return _units_cost_and_savings(
            rates.units, input_tokens, cache_read, write_5m, write_1h, output_tokens, batch_multiplier is not None
        )
    cost, savings = _cost_and_savings(rates, input_tokens, cache_read, write_5m, write_1h, output_tokens)
    if batch_multiplier is not None:
        cost *= batch_multiplier
        savings *= batch_multiplier
    return _to_units(cost.quantize(_COST_QUANTUM)), _to_units(savings.quantize(_COST_QUANTUM))


def _to_units(amount: Decimal) -> int:
    """An amount already quantized to 1e-10 USD, as integer units of 1e-10 USD (exact)."""
    return int(amount.scaleb(10))


@dataclass(frozen=True, slots=True)
class _RateCard:
    """One genai-prices `ModelPrice`, pre-evaluated per long-context region.

    genai-prices' tiers are a "cliff": once the request's *total* input (cache reads and writes
    included) is strictly above a tier's start, every token of the call is billed at the tier
    rate. `regions[i]` holds the rates when exactly `i` of the sorted `thresholds` are exceeded.
    """

    thresholds: tuple[int, ...]
    regions: tuple[_Rates, ...]

    def rates_for(self, total_input_tokens: int) -> _Rates:
        if not self.thresholds:
            return self.regions[0]
        # bisect_left counts the thresholds strictly below the total: genai-prices' `total > start`.
        return self.regions[bisect.bisect_left(self.thresholds, total_input_tokens)]


@dataclass(frozen=True, slots=True)
class _Override:
    id: int
    effective_from: datetime
    rates: _Rates
    batch_multiplier: Decimal
    source: str


class Pricer:
    """Prices the events of one project. Loads that project's overrides once (one query) at construction."""

    def __init__(self, *, project_id: int) -> None:
        overrides = PriceOverride.objects.filter(project_id=project_id).order_by("-effective_from", "-id")
        self._exact: dict[str, list[_Override]] = {}
        self._prefixes: dict[str, list[_Override]] = {}
        for row in overrides:
            if row.is_prefix:
                self._prefixes.setdefault(row.model[:-1], []).append(_override_from_row(row))
            else:
                self._exact.setdefault(row.model, []).append(_override_from_row(row))
        # Models seen by this Pricer -> their candidate overrides in precedence order.
        self._candidates: dict[str, tuple[_Override, ...]] = {}
        # (provider, model, UTC day number) -> (card, source) genai-prices picked; None if unknown.
        self._cards: dict[tuple[str, str, int], tuple[_RateCard, str] | None] = {}

    def price(
        self,
        *,
        model: str,
        provider: str,
        timestamp: datetime,
        input_tokens: int,
        output_tokens: int,
        cache_read_input_tokens: int,
        cache_write_5m_tokens: int,
        cache_write_1h_tokens: int,
        batch: bool,
    ) -> PriceResult:
        cost, savings, source = self.price_units(
            model,
            provider,
            timestamp,
            input_tokens,
            output_tokens,
            cache_read_input_tokens,
            cache_write_5m_tokens,
            cache_write_1h_tokens,
            batch,
        )
        if cost is None or savings is None:
            return _UNPRICED_RESULT
        # Decimal(n) * 1E-10 is exact (an exponent shift): the same Decimal quantize gives.
        return PriceResult(
            cost_usd=Decimal(cost) * _UNIT,
            source=source,
            cache_savings_usd=(Decimal(savings) * _UNIT) if savings else _ZERO_UNITS,
        )

    def price_units(
        self,
        model: str,
        provider: str,
        timestamp: datetime,
        input_tokens: int,
        output_tokens: int,
        cache_read_input_tokens: int,
        cache_write_5m_tokens: int,
        cache_write_1h_tokens: int,
        batch: bool,
    ) -> tuple[int | None, int | None, str]:
        """(cost, cache savings, source) with the amounts in integer units of 1e-10 USD (None when
        unpriced), positional: ingest calls this per event and stores the units as they are
        (`ingest_event.cost_units`; `cost_usd` is computed from them by PostgreSQL)."""
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware (UTC)")

        if self._exact or self._prefixes:
            override = self._override_for(model, timestamp)
            if override is not None:
                cost_units, savings_units = _priced_units(
                    override.rates,
                    override.batch_multiplier if batch else None,
                    input_tokens,
                    cache_read_input_tokens,
                    cache_write_5m_tokens,
                    cache_write_1h_tokens,
                    output_tokens,
                )
                return cost_units, savings_units, override.source

        provider = provider or DEFAULT_PROVIDER
        try:  # the rate card of this model and UTC day, when remembered (_card_for)
            found = self._cards[provider, model, utc_day_number(timestamp)]
        except KeyError:
            found = self._card_for(provider, model, timestamp)
        if found is None:
            return None, None, UNPRICED
        card, source = found
        if card.thresholds:
            rates = card.rates_for(
                input_tokens + cache_read_input_tokens + cache_write_5m_tokens + cache_write_1h_tokens
            )
        else:
            rates = card.regions[0]
        cost_units, savings_units = _priced_units(
            rates,
            ANTHROPIC_BATCH_MULTIPLIER if batch else None,
            input_tokens,
            cache_read_input_tokens,
            cache_write_5m_tokens,
            cache_write_1h_tokens,
            output_tokens,
        )
        return cost_units, savings_units, source

    def _card_for(self, provider: str, model: str, timestamp: datetime) -> tuple[_RateCard, str] | None:
        """The rate card genai-prices picks for this call, remembered per UTC day when that is exact."""
        key = (provider, model, utc_day_number(timestamp))
        try:
            return self._cards[key]
        except KeyError:
            pass
        found = _model_info(provider, model)
        if found is None:
            result = None
        else:
            info, source, by_date_only = found
            # genai-prices picks the dated price period itself (StartDateConstraint is a UTC date,
            # TimeOfDateConstraint a UTC time of day); the card behind it is cached.
            result = (_rate_card(info.get_prices(timestamp)), source)
            if not by_date_only:
                return result  # a time-of-day price: the day alone does not decide, so don't remember
        if len(self._cards) >= 4096:  # model names come from clients: stay bounded
            self._cards.clear()
        self._cards[key] = result
        return result

    def _override_for(self, model: str, timestamp: datetime) -> _Override | None:
        candidates = self._candidates.get(model)
        if candidates is None:
            candidates = self._candidates[model] = self._candidates_for(model)
        for override in candidates:  # newest first within each pattern
            if override.effective_from <= timestamp:
                return override
        return None

    def _candidates_for(self, model: str) -> tuple[_Override, ...]:
        # Most specific pattern first: the exact id, then prefixes from longest to shortest.
        # A less specific pattern is only consulted when no more specific one is in effect yet.
        groups = [self._exact.get(model, [])]
        prefixes = sorted((p for p in self._prefixes if model.startswith(p)), key=len, reverse=True)
        groups.extend(self._prefixes[p] for p in prefixes)
        return tuple(o for group in groups for o in group)


def _cost_and_savings(
    rates: _Rates, input_tokens: int, cache_read: int, write_5m: int, write_1h: int, output_tokens: int
) -> tuple[Decimal, Decimal]:
    cost = rates.cost(input_tokens, cache_read, write_5m, write_1h, output_tokens)
    if not (cache_read or write_5m or write_1h):
        return cost, _ZERO
    # Same tier: the long-context threshold counts cache tokens either way.
    uncached = rates.cost(input_tokens + cache_read + write_5m + write_1h, 0, 0, 0, output_tokens)
    return cost, uncached - cost


def _override_from_row(row: PriceOverride) -> _Override:
    base = row.input_usd_per_mtok

    def or_default(value: Decimal | None, multiplier: Decimal) -> Decimal:
        return base * multiplier if value is None else value

    return _Override(
        id=row.pk,
        effective_from=row.effective_from,
        rates=_with_units(
            _Rates(
                input=base,
                cache_read=or_default(row.cache_read_usd_per_mtok, DEFAULT_CACHE_READ_MULTIPLIER),
                cache_write_5m=or_default(row.cache_write_5m_usd_per_mtok, DEFAULT_CACHE_WRITE_5M_MULTIPLIER),
                cache_write_1h=or_default(row.cache_write_1h_usd_per_mtok, DEFAULT_CACHE_WRITE_1H_MULTIPLIER),
                output=row.output_usd_per_mtok,
            )
        ),
        batch_multiplier=row.batch_multiplier,
        source=f"override:{row.pk}",
    )


# --- genai-prices --------------------------------------------------------------------------


# Bounded because model names come from clients; a miss costs one ~80 µs genai-prices lookup.
@functools.lru_cache(maxsize=2048)
def _model_info(provider: str, model: str) -> tuple[ModelInfo, str, bool] | None:
    """genai-prices' model for (provider, model id), with its `source` and whether its price
    periods depend on the date alone (no time-of-day prices); None when unknown."""
    try:
        # Public API, used only to find the model: genai-prices matches dated ids
        # ("claude-haiku-4-5-20251001") and falls back across providers the same way.
        info = genai_prices.calc_price(genai_prices.Usage(), model, provider_id=provider).model
    except LookupError:
        return None
    by_date_only = isinstance(info.prices, ModelPrice) or all(
        p.constraint is None or isinstance(p.constraint, StartDateConstraint) for p in info.prices
    )
    return info, f"{PRICES_VERSION}:{info.id}", by_date_only


process_cache(_model_info.cache_clear)


# ModelPrice defines __eq__ without __hash__, so it can't key an lru_cache: key by identity and
# keep the object in the value so its id can't be reused. The snapshot's ModelPrices are
# finite and live for the whole process, so this never needs evicting. A race only builds a
# card twice.
_cards: dict[int, tuple[ModelPrice, _RateCard]] = {}
process_cache(_cards.clear)


def _rate_card(model_price: ModelPrice) -> _RateCard:
    entry = _cards.get(id(model_price))
    if entry is None or entry[0] is not model_price:
        entry = _cards[id(model_price)] = (model_price, _build_rate_card(model_price))
    return entry[1]


# One call's worth of each category, as genai-prices usage (its input_tokens includes cache).
_PROBES: dict[str, dict[str, int]] = {
    "input": {"input_tokens": _MTOK},
    "cache_read": {"input_tokens": _MTOK, "cache_read_tokens": _MTOK},
    "cache_write_5m": {"input_tokens": _MTOK, "cache_write_tokens": _MTOK, "cache_write_5m_tokens": _MTOK},
    "cache_write_1h": {"input_tokens": _MTOK, "cache_write_tokens": _MTOK, "cache_write_1h_tokens": _MTOK},
    "output": {"output_tokens": _MTOK},
}


def _build_rate_card(model_price: ModelPrice) -> _RateCard:
    """Ask genai-prices for the USD per MTok of each category, once per long-context region.

    Letting `ModelPrice.calc_price` price a million tokens of each category (rather than reading
    `input_mtok` & co. ourselves) keeps genai-prices' own fallbacks, e.g. a model with no
    `cache_write_1h_mtok` bills 1h writes at its 5m write price.
    """
    prices = {k: v for k, v in vars(model_price).items() if not k.startswith("_") and v is not None}
    thresholds = tuple(sorted({t.start for v in prices.values() if isinstance(v, TieredPrices) for t in v.tiers}))
    # A total input just above each threshold selects that region; 0 selects the base prices.
    representatives = (0, *(t + 1 for t in thresholds))
    regions = tuple(_region_rates(prices, total_input) for total_input in representatives)
    return _RateCard(thresholds=thresholds, regions=regions)


def _region_rates(prices: dict[str, Decimal | TieredPrices], total_input: int) -> _Rates:
    # Pin every tiered price at the tier this total input selects, so the probes below (whose own
    # input totals differ) are all priced in the same region and the result is linear.
    flat = ModelPrice(**{key: _tier_price(value, total_input) for key, value in prices.items()})
    per_call = flat.calc_price(genai_prices.Usage())["total_price"]
    per_mtok = {
        name: flat.calc_price(genai_prices.Usage(**usage))["total_price"] - per_call for name, usage in _PROBES.items()
    }
    return _with_units(
        _Rates(
            input=per_mtok["input"],
            cache_read=per_mtok["cache_read"],
            cache_write_5m=per_mtok["cache_write_5m"],
            cache_write_1h=per_mtok["cache_write_1h"],
            output=per_mtok["output"],
            per_call=per_call,
        )
    )


def _tier_price(value: Decimal | TieredPrices, total_input: int) -> Decimal:
    """genai-prices' `calc_unit_price` tier rule: the highest tier whose start is exceeded."""
    if not isinstance(value, TieredPrices):
        return value
    for tier in reversed(value.tiers):  # TieredPrices sorts its tiers ascending
        if total_input > tier.start:
            return tier.price
    return value.base


def genai_usage(
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_input_tokens: int,
    cache_write_5m_tokens: int,
    cache_write_1h_tokens: int,
) -> genai_prices.Usage:
    """The genai-prices `Usage` of an Anthropic-style call (for cross-checks; pricing doesn't need it)."""
    return genai_prices.Usage(
        input_tokens=input_tokens + cache_read_input_tokens + cache_write_5m_tokens + cache_write_1h_tokens,
        cache_read_tokens=cache_read_input_tokens,
        cache_write_tokens=cache_write_5m_tokens + cache_write_1h_tokens,
        cache_write_5m_tokens=cache_write_5m_tokens,
        cache_write_1h_tokens=cache_write_1h_tokens,
        output_tokens=output_tokens,
    )


# Per-process Pricers: building one costs a query, and ingest prices every request. An
# override added in the admin reaches new events within PRICER_TTL_S (and `reprice` fixes
# history), which is the trade for not querying overrides on every ingest.
PRICER_TTL_S = 10.0
_pricers: dict[int, tuple[float, Pricer]] = {}


def pricer_for(project_id: int) -> Pricer:
    now = time.monotonic()
    cached = _pricers.get(project_id)
    if cached is not None and now - cached[0] < PRICER_TTL_S:
        return cached[1]
    pricer = Pricer(project_id=project_id)
    _pricers[project_id] = (now, pricer)
    return pricer


@process_cache
def pricers_forget() -> None:
    """Drop cached Pricers (tests, and right after overrides change in this process)."""
    _pricers.clear()


# --- price override writes (the project admin pages) ---------------------------------------------
# Invariant: stored event costs never change here; `manage.py reprice` applies an override to
# events already stored. This process's Pricers are dropped once the change commits, other
# processes pick it up within PRICER_TTL_S.


@transaction.atomic
def price_override_create(
    *,
    project: Project,
    model: str,
    effective_from: datetime,
    input_usd_per_mtok: Decimal,
    output_usd_per_mtok: Decimal,
    cache_read_usd_per_mtok: Decimal | None = None,
    cache_write_5m_usd_per_mtok: Decimal | None = None,
    cache_write_1h_usd_per_mtok: Decimal | None = None,
    batch_multiplier: Decimal = ANTHROPIC_BATCH_MULTIPLIER,
    note: str = "",
) -> PriceOverride:
    override = PriceOverride.objects.create(
        project=project,
        model=model,
        effective_from=effective_from,
        input_usd_per_mtok=input_usd_per_mtok,
        output_usd_per_mtok=output_usd_per_mtok,
        cache_read_usd_per_mtok=cache_read_usd_per_mtok,
        cache_write_5m_usd_per_mtok=cache_write_5m_usd_per_mtok,
        cache_write_1h_usd_per_mtok=cache_write_1h_usd_per_mtok,
        batch_multiplier=batch_multiplier,
        note=note,
    )
    transaction.on_commit(pricers_forget)
    return override


@transaction.atomic
def price_override_delete(*, override: PriceOverride) -> None:
    override.delete()
    transaction.on_commit(pricers_forget)
