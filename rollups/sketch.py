"""Mergeable latency (and time-to-first-token) histograms: DDSketch's logarithmic mapping with fixed gamma.

bucket(v) = ceil(log_gamma(v)) for v > 0, gamma = (1 + a) / (1 - a) with a = 0.01, and the
bucket's representative value 2 * gamma^i / (1 + gamma) is within a relative error a of
every value in (gamma^(i-1), gamma^i]. Histograms merge by summing counts per index, so
a quantile over any set of aggregate rows is exact to 1%. The same mapping is written in
SQL by the rollup (`bucket_sql`); tests check the two agree.

Quantile rank follows DDSketch: the value of rank floor(q * (n - 1)) in sorted order
(numpy's method="lower").
"""

from __future__ import annotations

import math
from collections.abc import Iterable

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LN_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -(2**31)  # latency 0 (or below the smallest positive double we care about)


def bucket_sql(column: str) -> str:
    """`bucket_of(column)` in SQL (NULL stays NULL)."""
    return f"CASE WHEN {column} <= 0 THEN {ZERO_BUCKET} ELSE ceil(ln({column}) / {LN_GAMMA!r})::int END"


BUCKET_SQL = bucket_sql("latency_ms")


def bucket_of(value: float) -> int:
    if value <= 0:
        return ZERO_BUCKET
    return math.ceil(math.log(value) / LN_GAMMA)


def bucket_value(index: int) -> float:
    if index == ZERO_BUCKET:
        return 0.0
    return 2 * GAMMA**index / (1 + GAMMA)


def merge(pairs: Iterable[tuple[Iterable[int], Iterable[int]]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for indexes, counts in pairs:
        for index, count in zip(indexes, counts, strict=True):
            merged[index] = merged.get(index, 0) + count
    return merged


def quantiles(histogram: dict[int, int], qs: Iterable[float]) -> list[float | None]:
    """Values at quantiles `qs` (each in [0, 1]) of a merged histogram; None when empty."""
    total = sum(histogram.values())
    qs = list(qs)
    if total == 0:
        return [None for _ in qs]
    ordered = sorted(histogram.items())
    results: list[float | None] = []
    for q in qs:
        rank = math.floor(q * (total - 1))
        running = 0
        for index, count in ordered:
            running += count
            if running > rank:
                results.append(bucket_value(index))
                break
    return results
