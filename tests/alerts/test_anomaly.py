"""Anomaly decisions on synthetic window series (alerts.services.windows_judge)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from alerts.models import AlertRule, Condition, Metric
from alerts.selectors import WindowValue
from alerts.services import windows_judge
from rollups.selectors import MetricsRow

END = datetime(2026, 11, 20, 12, tzinfo=UTC)


def series(values: list[float], *, window: str = "hour", requests: list[int] | None = None) -> list[WindowValue]:
    """Windows ending with the current (partial) one; the last value is the closed window under test."""
    step = timedelta(hours=1) if window == "hour" else timedelta(days=1)
    n = len(values)
    out = []
    for i, v in enumerate([*values, 0.0]):
        start = END - step * (n - i)
        reqs = (requests[i] if requests and i < n else 100) if i < n else 0
        out.append(WindowValue(start=start, requests=reqs, value=v, row=MetricsRow(bucket=start, group={})))
    return out


def rule(metric: str = Metric.REQUESTS, window: str = "hour", sensitivity: float = 3.0) -> AlertRule:
    return AlertRule(
        name="r",
        metric=metric,
        window=window,
        condition=Condition.ANOMALY,
        sensitivity=sensitivity,
        min_requests=20,
        recipients=["oncall@example.com"],
    )


def hourly(days: int, fn) -> list[float]:  # type: ignore[no-untyped-def]
    """fn(hour_index) for 24 x days + 1 hours (the last is the closed window)."""
    return [fn(i) for i in range(24 * days + 1)]


def test_flat_series_with_a_spike_fires():
    values = hourly(15, lambda i: 100.0)
    values[-1] = 400.0
    judgement = windows_judge(rule(), series(values))
    assert judgement.breaching
    assert judgement.baseline == 100.0
    assert judgement.window is not None
    assert judgement.window.value == 400.0


def test_flat_series_without_a_spike_does_not_fire():
    assert not windows_judge(rule(), series(hourly(15, lambda i: 100.0))).breaching


def test_flat_series_small_wiggle_does_not_fire_even_with_zero_mad():
    values = hourly(15, lambda i: 100.0)
    values[-1] = 108.0  # within the 10% relative floor
    assert not windows_judge(rule(), series(values)).breaching


def test_noisy_but_stationary_series_does_not_fire():
    rng = random.Random(7)
    false_alarms = 0
    for _ in range(40):
        values = hourly(15, lambda i: max(0.0, rng.gauss(100, 15)))
        false_alarms += windows_judge(rule(), series(values)).breaching
    assert false_alarms == 0


def test_smooth_daily_cycle_does_not_fire_at_its_peak():
    # Requests swing 20 -> 380 over the day; the closed window is the daily peak.
    def cycle(i: int) -> float:
        return 200 + 180 * math.cos(2 * math.pi * (i % 24) / 24)  # the closed window (i % 24 == 0) peaks

    values = hourly(15, cycle)
    assert values[-1] == pytest.approx(380)
    assert min(values) == pytest.approx(20)
    judgement = windows_judge(rule(), series(values))
    assert not judgement.breaching
    # ... while the same peak hour doubled is an anomaly: like hours are compared.
    values[-1] *= 2
    assert windows_judge(rule(), series(values)).breaching


def test_new_service_with_little_history_does_not_page():
    values = [0.0] * (24 * 12) + hourly(3, lambda i: 50.0)[: 24 * 3 + 1]
    values[-1] = 5000.0
    reqs = [0] * (24 * 12) + [50] * (24 * 3 + 1)
    judgement = windows_judge(rule(), series(values, requests=reqs))
    assert not judgement.breaching
    assert judgement.detail == {"reason": "not enough history"}


def test_volume_guard_ignores_low_traffic_error_rates():
    values = hourly(15, lambda i: 0.01)
    values[-1] = 1 / 3  # 1 error out of 3 requests
    reqs = [100] * (len(values) - 1) + [3]
    assert not windows_judge(rule(Metric.ERROR_RATE), series(values, requests=reqs)).breaching
    reqs[-1] = 300
    assert windows_judge(rule(Metric.ERROR_RATE), series(values, requests=reqs)).breaching


def test_cache_hit_rate_fires_when_it_drops_not_when_it_rises():
    values = hourly(15, lambda i: 0.6)
    values[-1] = 0.2
    assert windows_judge(rule(Metric.CACHE_HIT_RATE), series(values)).breaching
    values[-1] = 0.95
    assert not windows_judge(rule(Metric.CACHE_HIT_RATE), series(values)).breaching


def test_daily_rules_compare_with_the_last_14_days():
    values = [1000.0 + (i % 3) * 20 for i in range(15)]
    assert not windows_judge(rule(Metric.COST_USD, window="day"), series(values, window="day")).breaching
    values[-1] = 3000.0
    assert windows_judge(rule(Metric.COST_USD, window="day"), series(values, window="day")).breaching


def test_higher_sensitivity_needs_a_bigger_move():
    rng = random.Random(3)
    values = hourly(15, lambda i: rng.gauss(100, 10))
    values[-1] = 150.0
    assert windows_judge(rule(sensitivity=2.0), series(values)).breaching
    assert not windows_judge(rule(sensitivity=8.0), series(values)).breaching
