"""pricing.services.Pricer.

Expected costs are written out by hand from published USD-per-MTok prices, not computed by
genai-prices. Where the figures come from:
- genai-prices 0.2.3 `genai_prices/data.py`, provider "anthropic" (each model's `prices`);
- Anthropic's pricing page as summarised in /work/shared/reference/tech-facts.md §3: cache
  read 0.1x input, 5-minute write 1.25x, 1-hour write 2x, batch 50% of everything, and the
  historic >200k long-context rates (Sonnet $6 / $22.50, Opus 4.6 $10 / $37.50).

    model              input  output  cache read  5m write  1h write
    claude-sonnet-4-6  $3     $15     $0.30       $3.75     $6       (flat from 2026-03-13)
    claude-opus-4-7    $5     $25     $0.50       $6.25     $10
    claude-haiku-4-5   $1     $5      $0.10       $1.25     $2
    claude-sonnet-4-5  $3     $15     $0.30       $3.75     $6       >200k total input: $6 / $22.50 / $0.60 / $7.50 / $12
    claude-haiku-5-5   $0.10  $0.50   $0.01       $0.125    $0.20    >100k total input: 5x every rate
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from unittest import mock

import genai_prices
import pytest
from django.db import IntegrityError
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice

from pricing.models import PriceOverride
from pricing.services import PRICES_VERSION, Pricer, PriceResult, genai_usage
from projects.services import project_get_or_create

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TOLERANCE = D("1e-6")


def mtok(*terms: int | D) -> D:
    """Sum of tokens x USD-per-MTok terms, in USD."""
    return sum((D(t) for t in terms), D(0)) / 1_000_000


def assert_cost(result: PriceResult, expected: D) -> None:
    assert result.cost_usd is not None, result
    assert abs(result.cost_usd - expected) < TOLERANCE, (result.cost_usd, expected)


def price(
    pricer: Pricer,
    model: str,
    *,
    at: datetime = NOW,
    input: int = 0,
    output: int = 0,
    read: int = 0,
    w5m: int = 0,
    w1h: int = 0,
    batch: bool = False,
    provider: str = "anthropic",
) -> PriceResult:
    return pricer.price(
        model=model,
        provider=provider,
        timestamp=at,
        input_tokens=input,
        output_tokens=output,
        cache_read_input_tokens=read,
        cache_write_5m_tokens=w5m,
        cache_write_1h_tokens=w1h,
        batch=batch,
    )


def genai_source(model_id: str) -> str:
    return f"genai-prices {genai_prices.__version__}:{model_id}"


def add_override(project, **fields) -> PriceOverride:  # type: ignore[no-untyped-def]
    values = {
        "model": "claude-sonnet-4-6",
        "effective_from": datetime(2026, 1, 1, tzinfo=UTC),
        "input_usd_per_mtok": D("2"),
        "output_usd_per_mtok": D("10"),
    }
    return PriceOverride.objects.create(project=project, **{**values, **fields})


@pytest.fixture
def pricer(project) -> Pricer:  # type: ignore[no-untyped-def]
    return Pricer(project_id=project.id)


# --- genai-prices: standard calls, cache, batch ------------------------------------------------

STANDARD_CASES = [
    # Sonnet 4.6: $3 in, $15 out, read $0.30, 5m write $3.75 (1.25 x 3), 1h write $6 (2 x 3).
    pytest.param(
        "claude-sonnet-4-6", {"input": 10_000, "output": 2_000}, mtok(10_000 * 3, 2_000 * 15), id="sonnet-plain"
    ),
    pytest.param(
        "claude-sonnet-4-6",
        {"input": 500, "w5m": 20_000, "output": 1_000},
        mtok(500 * 3, 20_000 * D("3.75"), 1_000 * 15),
        id="sonnet-5m-write",
    ),
    pytest.param(
        "claude-sonnet-4-6",
        {"input": 500, "w1h": 20_000, "output": 1_000},
        mtok(500 * 3, 20_000 * 6, 1_000 * 15),
        id="sonnet-1h-write",
    ),
    pytest.param(
        "claude-sonnet-4-6",
        {"input": 500, "read": 100_000, "output": 1_000},
        mtok(500 * 3, 100_000 * D("0.30"), 1_000 * 15),
        id="sonnet-cache-read",
    ),
    # The worked example of tech-facts §2.1 ($0.073536), all categories at once.
    pytest.param(
        "claude-sonnet-4-6",
        {"input": 12, "read": 50_000, "w5m": 4_000, "w1h": 6_000, "output": 500},
        mtok(12 * 3, 50_000 * D("0.30"), 4_000 * D("3.75"), 6_000 * 6, 500 * 15),
        id="sonnet-everything",
    ),
    # Opus 4.7: $5 in, $25 out, read $0.50, 5m $6.25, 1h $10.
    pytest.param("claude-opus-4-7", {"input": 10_000, "output": 2_000}, mtok(10_000 * 5, 2_000 * 25), id="opus-plain"),
    pytest.param(
        "claude-opus-4-7",
        {"input": 300, "w5m": 8_000, "output": 700},
        mtok(300 * 5, 8_000 * D("6.25"), 700 * 25),
        id="opus-5m-write",
    ),
    pytest.param(
        "claude-opus-4-7",
        {"input": 300, "w1h": 8_000, "output": 700},
        mtok(300 * 5, 8_000 * 10, 700 * 25),
        id="opus-1h-write",
    ),
    pytest.param(
        "claude-opus-4-7",
        {"input": 300, "read": 64_000, "output": 700},
        mtok(300 * 5, 64_000 * D("0.50"), 700 * 25),
        id="opus-cache-read",
    ),
    # Haiku 4.5: $1 in, $5 out, read $0.10, 5m $1.25, 1h $2.
    pytest.param("claude-haiku-4-5", {"input": 10_000, "output": 2_000}, mtok(10_000 * 1, 2_000 * 5), id="haiku-plain"),
    pytest.param(
        "claude-haiku-4-5",
        {"input": 40, "w5m": 3_000, "output": 90},
        mtok(40 * 1, 3_000 * D("1.25"), 90 * 5),
        id="haiku-5m-write",
    ),
    pytest.param(
        "claude-haiku-4-5",
        {"input": 40, "w1h": 3_000, "output": 90},
        mtok(40 * 1, 3_000 * 2, 90 * 5),
        id="haiku-1h-write",
    ),
    pytest.param(
        "claude-haiku-4-5",
        {"input": 40, "read": 250_000, "output": 90},
        mtok(40 * 1, 250_000 * D("0.10"), 90 * 5),
        id="haiku-cache-read",
    ),
]


@pytest.mark.parametrize(("model", "tokens", "expected"), STANDARD_CASES)
def test_standard_calls_cost_tokens_times_published_rates(pricer, model, tokens, expected):
    result = price(pricer, model, **tokens)

    assert_cost(result, expected)
    assert result.source == genai_source(model)


def test_costs_are_quantized_to_the_numeric_20_10_column(pricer):
    result = price(pricer, "claude-sonnet-4-6", input=1, output=1)

    assert result.cost_usd == D("0.0000180000")  # 1 x $3 + 1 x $15 per MTok
    assert result.cost_usd.as_tuple().exponent == -10


def test_batch_halves_a_plain_call(pricer):
    result = price(pricer, "claude-sonnet-4-6", input=10_000, output=2_000, batch=True)

    assert_cost(result, mtok(10_000 * 3, 2_000 * 15) * D("0.5"))


def test_batch_halves_cache_writes_and_reads_too(pricer):
    result = price(pricer, "claude-opus-4-7", input=1_000, read=40_000, w5m=8_000, w1h=2_000, output=3_000, batch=True)

    assert_cost(result, mtok(1_000 * 5, 40_000 * D("0.50"), 8_000 * D("6.25"), 2_000 * 10, 3_000 * 25) * D("0.5"))


def test_batch_is_discounted_before_genai_prices_models_batch_variants(pricer):
    # genai-prices 0.2.3's batch variants start on 2026-10-14; at 2026-06-01 its batch context
    # still returns the standard price, but Anthropic's 50% applied then too.
    at = datetime(2026, 6, 1, tzinfo=UTC)
    genai_batch = genai_prices.calc_price(
        genai_usage(
            input_tokens=10_000,
            output_tokens=2_000,
            cache_read_input_tokens=0,
            cache_write_5m_tokens=0,
            cache_write_1h_tokens=0,
        ),
        "claude-haiku-4-5",
        provider_id="anthropic",
        genai_request_timestamp=at,
        price_context={"processing": "batch"},
    )
    assert genai_batch.total_price == mtok(10_000 * 1, 2_000 * 5)  # i.e. no discount: why we don't use it

    result = price(pricer, "claude-haiku-4-5", at=at, input=10_000, output=2_000, batch=True)

    assert_cost(result, mtok(10_000 * 1, 2_000 * 5) * D("0.5"))


# --- long context --------------------------------------------------------------------------

BEFORE_FLAT_LONG_CONTEXT = datetime(2026, 2, 20, 9, 30, tzinfo=UTC)  # 4.6 models flat from 2026-03-13


def test_sonnet_4_5_below_200k_input_is_base_rate(pricer):
    result = price(pricer, "claude-sonnet-4-5", at=BEFORE_FLAT_LONG_CONTEXT, input=150_000, output=1_000)

    assert_cost(result, mtok(150_000 * 3, 1_000 * 15))  # $0.465


def test_sonnet_4_5_above_200k_reprices_every_token_including_output(pricer):
    result = price(pricer, "claude-sonnet-4-5", at=BEFORE_FLAT_LONG_CONTEXT, input=250_000, output=1_000)

    assert_cost(result, mtok(250_000 * 6, 1_000 * D("22.5")))  # $1.5225


def test_long_context_threshold_counts_cache_reads_and_writes(pricer):
    # 10k uncached + 150k read + 30k 5m + 15k 1h = 205k total input > 200k.
    result = price(
        pricer,
        "claude-sonnet-4-5",
        at=BEFORE_FLAT_LONG_CONTEXT,
        input=10_000,
        read=150_000,
        w5m=30_000,
        w1h=15_000,
        output=1_000,
    )

    assert_cost(result, mtok(10_000 * 6, 150_000 * D("0.60"), 30_000 * D("7.5"), 15_000 * 12, 1_000 * D("22.5")))


def test_exactly_200k_input_is_still_base_rate(pricer):
    # Anthropic: "If your request exceeds 200K input tokens"; genai-prices: total > start.
    result = price(pricer, "claude-sonnet-4-5", at=BEFORE_FLAT_LONG_CONTEXT, input=100_000, read=100_000, output=1_000)

    assert_cost(result, mtok(100_000 * 3, 100_000 * D("0.30"), 1_000 * 15))


def test_sonnet_4_6_long_context_tier_depends_on_the_event_timestamp(pricer):
    tiered = price(pricer, "claude-sonnet-4-6", at=BEFORE_FLAT_LONG_CONTEXT, input=250_000, output=1_000)
    flat = price(pricer, "claude-sonnet-4-6", at=datetime(2026, 4, 1, tzinfo=UTC), input=250_000, output=1_000)

    assert_cost(tiered, mtok(250_000 * 6, 1_000 * D("22.5")))
    assert_cost(flat, mtok(250_000 * 3, 1_000 * 15))


def test_opus_4_6_long_context_uses_its_historic_tier(pricer):
    result = price(pricer, "claude-opus-4-6", at=BEFORE_FLAT_LONG_CONTEXT, input=250_000, output=1_000)

    assert_cost(result, mtok(250_000 * 10, 1_000 * D("37.5")))  # $2.5375


def test_haiku_5_5_prompt_over_100k_costs_five_times_on_every_token(pricer):
    short = price(pricer, "claude-haiku-5-5", input=90_000, output=2_000)
    long = price(pricer, "claude-haiku-5-5", input=20_000, read=100_000, output=2_000)  # 120k total input

    assert_cost(short, mtok(90_000 * D("0.10"), 2_000 * D("0.50")))
    assert_cost(long, mtok(20_000 * D("0.50"), 100_000 * D("0.05"), 2_000 * D("2.50")))


def test_batch_halves_the_long_context_tier_too(pricer):
    result = price(pricer, "claude-haiku-5-5", input=120_000, output=2_000, batch=True)

    assert_cost(result, mtok(120_000 * D("0.50"), 2_000 * D("2.50")) * D("0.5"))


# --- model resolution and unpriced -----------------------------------------------------------


def test_dated_model_id_resolves_to_its_family(pricer):
    result = price(pricer, "claude-haiku-4-5-20251001", input=10_000, output=2_000)

    assert result.source == genai_source("claude-haiku-4-5")
    assert_cost(result, mtok(10_000 * 1, 2_000 * 5))


@pytest.mark.parametrize(
    ("model", "provider"),
    [("claude-imaginary-9", "anthropic"), ("gpt-nope", "anthropic"), ("claude-sonnet-4-6", "no-such-provider")],
)
def test_unknown_model_or_provider_is_unpriced_never_zero(pricer, model, provider):
    result = price(pricer, model, provider=provider, input=10_000, output=2_000)

    assert result == PriceResult(cost_usd=None, source="unpriced")


def test_a_known_model_with_no_tokens_costs_zero_not_unpriced(pricer):
    result = price(pricer, "claude-sonnet-4-6")

    assert result == PriceResult(cost_usd=D(0), source=genai_source("claude-sonnet-4-6"), cache_savings_usd=D(0))


def test_naive_timestamps_are_rejected(pricer):
    with pytest.raises(ValueError, match="timezone-aware"):
        price(pricer, "claude-sonnet-4-6", at=datetime(2026, 11, 20, 12, 0))  # noqa: DTZ001


# --- overrides -----------------------------------------------------------------------------


def test_override_starting_mid_range_applies_only_from_its_effective_instant(project):
    start = datetime(2026, 6, 1, tzinfo=UTC)
    override = add_override(project, effective_from=start)  # $2 / $10 instead of $3 / $15
    pricer = Pricer(project_id=project.id)

    before = price(pricer, "claude-sonnet-4-6", at=start - timedelta(seconds=1), input=10_000, output=2_000)
    at_start = price(pricer, "claude-sonnet-4-6", at=start, input=10_000, output=2_000)
    after = price(pricer, "claude-sonnet-4-6", at=NOW, input=10_000, output=2_000)

    assert before.source == genai_source("claude-sonnet-4-6")
    assert_cost(before, mtok(10_000 * 3, 2_000 * 15))
    for result in (at_start, after):
        assert result.source == f"override:{override.id}"
        assert_cost(result, mtok(10_000 * 2, 2_000 * 10))


def test_override_cache_prices_default_to_anthropic_multipliers_of_its_input(project):
    add_override(project)  # input $2: read 0.1x = $0.20, 5m 1.25x = $2.50, 1h 2x = $4
    pricer = Pricer(project_id=project.id)

    result = price(pricer, "claude-sonnet-4-6", input=100, read=10_000, w5m=1_000, w1h=1_000, output=100)

    assert_cost(result, mtok(100 * 2, 10_000 * D("0.20"), 1_000 * D("2.50"), 1_000 * 4, 100 * 10))


def test_override_explicit_cache_prices_win_over_the_defaults(project):
    add_override(
        project,
        cache_read_usd_per_mtok=D("0.15"),
        cache_write_5m_usd_per_mtok=D("3"),
        cache_write_1h_usd_per_mtok=D("5"),
    )
    pricer = Pricer(project_id=project.id)

    result = price(pricer, "claude-sonnet-4-6", input=100, read=10_000, w5m=1_000, w1h=1_000, output=100)

    assert_cost(result, mtok(100 * 2, 10_000 * D("0.15"), 1_000 * 3, 1_000 * 5, 100 * 10))


def test_override_batch_uses_its_batch_multiplier(project):
    add_override(project, batch_multiplier=D("0.6"))
    pricer = Pricer(project_id=project.id)

    result = price(pricer, "claude-sonnet-4-6", input=10_000, read=5_000, output=2_000, batch=True)

    assert_cost(result, mtok(10_000 * 2, 5_000 * D("0.20"), 2_000 * 10) * D("0.6"))


def test_override_has_no_long_context_tier(project):
    add_override(project, model="claude-sonnet-4-5")
    pricer = Pricer(project_id=project.id)

    result = price(pricer, "claude-sonnet-4-5", at=BEFORE_FLAT_LONG_CONTEXT, input=250_000, output=1_000)

    assert_cost(result, mtok(250_000 * 2, 1_000 * 10))


def test_latest_effective_override_wins_and_older_ones_keep_their_window(project):
    old = add_override(project, effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    new = add_override(project, effective_from=datetime(2026, 9, 1, tzinfo=UTC), input_usd_per_mtok=D("1"))
    pricer = Pricer(project_id=project.id)

    in_old_window = price(pricer, "claude-sonnet-4-6", at=datetime(2026, 8, 31, 23, 59, tzinfo=UTC), input=1_000)
    in_new_window = price(pricer, "claude-sonnet-4-6", at=NOW, input=1_000)

    assert in_old_window.source == f"override:{old.id}"
    assert_cost(in_old_window, mtok(1_000 * 2))
    assert in_new_window.source == f"override:{new.id}"
    assert_cost(in_new_window, mtok(1_000 * 1))


def test_prefix_override_matches_dated_ids_and_nothing_else(project):
    override = add_override(project, model="claude-sonnet-4-6*")
    pricer = Pricer(project_id=project.id)

    dated = price(pricer, "claude-sonnet-4-6-20260217", input=10_000, output=2_000)
    bare = price(pricer, "claude-sonnet-4-6", input=10_000, output=2_000)
    other = price(pricer, "claude-sonnet-4-5", input=10_000, output=2_000)

    assert dated.source == bare.source == f"override:{override.id}"
    assert_cost(dated, mtok(10_000 * 2, 2_000 * 10))
    assert other.source == genai_source("claude-sonnet-4-5")
    assert_cost(other, mtok(10_000 * 3, 2_000 * 15))


def test_exact_override_beats_a_newer_prefix_override(project):
    exact = add_override(project, model="claude-sonnet-4-6", effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    add_override(project, model="claude-sonnet-*", effective_from=datetime(2026, 6, 1, tzinfo=UTC))
    pricer = Pricer(project_id=project.id)

    assert price(pricer, "claude-sonnet-4-6", input=1).source == f"override:{exact.id}"


def test_longer_prefix_beats_a_newer_shorter_prefix(project):
    longer = add_override(project, model="claude-sonnet-*", effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    shorter = add_override(project, model="claude-*", effective_from=datetime(2026, 6, 1, tzinfo=UTC))
    pricer = Pricer(project_id=project.id)

    assert price(pricer, "claude-sonnet-4-6", input=1).source == f"override:{longer.id}"
    assert price(pricer, "claude-opus-4-7", input=1).source == f"override:{shorter.id}"


def test_a_less_specific_override_applies_before_the_more_specific_one_starts(project):
    add_override(project, model="claude-sonnet-4-6", effective_from=datetime(2026, 9, 1, tzinfo=UTC))
    prefix = add_override(project, model="claude-*", effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    pricer = Pricer(project_id=project.id)

    assert price(pricer, "claude-sonnet-4-6", at=datetime(2026, 5, 1, tzinfo=UTC), input=1).source == (
        f"override:{prefix.id}"
    )


def test_override_prices_a_model_genai_prices_does_not_know(project):
    override = add_override(project, model="acme-finetune-v2")
    pricer = Pricer(project_id=project.id)

    result = price(pricer, "acme-finetune-v2", provider="acme", input=10_000, output=2_000)

    assert result.source == f"override:{override.id}"
    assert_cost(result, mtok(10_000 * 2, 2_000 * 10))


def test_another_projects_overrides_are_ignored(project):
    other = project_get_or_create(slug="other")
    add_override(other)
    pricer = Pricer(project_id=project.id)

    assert price(pricer, "claude-sonnet-4-6", input=1).source == genai_source("claude-sonnet-4-6")


def test_pricer_queries_once_at_construction_and_never_while_pricing(project, django_assert_num_queries):
    add_override(project, model="claude-sonnet-*")
    with django_assert_num_queries(1):
        pricer = Pricer(project_id=project.id)
    with django_assert_num_queries(0):
        for model in ("claude-sonnet-4-6", "claude-opus-4-7", "claude-imaginary", "claude-sonnet-4-6"):
            price(pricer, model, input=10, output=10)


def test_a_star_is_only_allowed_at_the_end_of_an_override_model(project):
    with pytest.raises(IntegrityError):
        add_override(project, model="claude-*-4-6")


# --- agreement with genai-prices, and the cache ------------------------------------------------

ANTHROPIC = next(p for p in get_snapshot().providers if p.id == "anthropic")
# Around every dated price change in the data, plus a recent instant.
CHECK_TIMES = [
    NOW,
    BEFORE_FLAT_LONG_CONTEXT,
    datetime(2026, 3, 12, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 3, 13, tzinfo=UTC),
    datetime(2026, 10, 14, tzinfo=UTC),
]


def test_every_anthropic_model_matches_genai_prices_calc_price_exactly(pricer):
    rng = random.Random(20261120)
    for model in ANTHROPIC.models:
        for at in CHECK_TIMES:
            for _ in range(40):
                # Mix of small calls and ones that cross the 100k / 200k long-context thresholds.
                inp, out, read, w5m, w1h = (
                    rng.choice([0, rng.randint(1, 3_000), rng.randint(1, 150_000)]) for _ in range(5)
                )
                reference = genai_prices.calc_price(
                    genai_usage(
                        input_tokens=inp,
                        output_tokens=out,
                        cache_read_input_tokens=read,
                        cache_write_5m_tokens=w5m,
                        cache_write_1h_tokens=w1h,
                    ),
                    model.id,
                    provider_id="anthropic",
                    genai_request_timestamp=at,
                ).total_price

                result = price(pricer, model.id, at=at, input=inp, output=out, read=read, w5m=w5m, w1h=w1h)

                assert result.cost_usd == reference.quantize(D("1e-10")), (model.id, at, inp, out, read, w5m, w1h)


def test_half_price_batch_agrees_with_genai_prices_batch_variants_where_it_has_them(pricer):
    # Guards our flat 0.5 against the data: wherever genai-prices models a batch price
    # (2026-10-14 on), it must be exactly half the standard one for token usage.
    usage = {"input": 20_000, "read": 90_000, "w5m": 7_000, "w1h": 3_000, "output": 4_000}
    checked = 0
    for model in ANTHROPIC.models:
        if not any(v.when == {"processing": "batch"} for v in model.price_variants or ()):
            continue
        reference = genai_prices.calc_price(
            genai_usage(
                input_tokens=usage["input"],
                output_tokens=usage["output"],
                cache_read_input_tokens=usage["read"],
                cache_write_5m_tokens=usage["w5m"],
                cache_write_1h_tokens=usage["w1h"],
            ),
            model.id,
            provider_id="anthropic",
            genai_request_timestamp=NOW,
            price_context={"processing": "batch"},
        ).total_price

        assert price(pricer, model.id, batch=True, **usage).cost_usd == reference.quantize(D("1e-10")), model.id
        checked += 1
    assert checked >= 10


def test_cached_calls_do_not_run_genai_prices_calc_price(pricer):
    price(pricer, "claude-sonnet-4-6", input=1, output=1)  # warm the model and rate-card caches

    with mock.patch.object(ModelPrice, "calc_price", autospec=True, side_effect=AssertionError("not cached")):
        for n in range(100):
            price(pricer, "claude-sonnet-4-6", at=NOW + timedelta(minutes=n), input=n, output=n, read=n)


def test_prices_version_names_the_installed_genai_prices():
    assert PRICES_VERSION == f"genai-prices {genai_prices.__version__}" == "genai-prices 0.2.3"


def test_cache_savings_are_uncached_price_minus_real_price(pricer):
    # Sonnet 4.6: 10k reads save 10k x ($3 - $0.30); 1k 5m writes cost 1k x ($3.75 - $3) extra,
    # 500 1h writes 500 x ($6 - $3) extra.
    result = price(pricer, "claude-sonnet-4-6", input=100, output=50, read=10_000, w5m=1_000, w1h=500)
    assert result.cache_savings_usd == mtok(10_000 * D("2.7")) - mtok(1_000 * D("0.75"), 500 * 3)
    batch = price(pricer, "claude-sonnet-4-6", input=100, output=50, read=10_000, w5m=1_000, w1h=500, batch=True)
    assert batch.cache_savings_usd == result.cache_savings_usd / 2
    assert price(pricer, "claude-sonnet-4-6", input=100).cache_savings_usd == D(0)
    assert price(pricer, "claude-experimental-x", read=100).cache_savings_usd is None
