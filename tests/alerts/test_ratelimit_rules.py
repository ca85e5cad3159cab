"""Rate-limit headroom and 429s are rule metrics: a headroom rule fires below its threshold on the
lowest remaining/limit reported, a window with no rate-limit headers never breaches it, and a
429 count rule counts HTTP 429s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.formatting import METRIC_LABELS, format_metric
from alerts.models import AlertRule, Incident, Metric, Notification
from alerts.selectors import rule_windows
from alerts.services import rules_evaluate
from projects.services import ingest_key_create
from rollups.services import rollup_until_current
from tests.rollups.helpers import ingest

pytestmark = pytest.mark.usefixtures("clean_events")

NOW = datetime.now(tz=UTC).replace(minute=5, second=0, microsecond=0)
CLOSED = NOW.replace(minute=0) - timedelta(hours=1)


def calls(prefix: str, n: int, **fields) -> list[dict]:  # type: ignore[no-untyped-def]
    return [
        {
            "request_id": f"{prefix}{i}",
            "model": "claude-sonnet-4-6",
            "latency_ms": 500,
            "input_tokens": 100,
            "timestamp": (CLOSED + timedelta(minutes=i % 60)).isoformat(),
            **fields,
        }
        for i in range(n)
    ]


def rule(key, metric: str, threshold: float, condition: str) -> AlertRule:  # type: ignore[no-untyped-def]
    return AlertRule.objects.create(
        project=key.project,
        name=f"{metric} per hour",
        metric=metric,
        window="hour",
        condition=condition,
        threshold=threshold,
        recipients=["oncall@example.com"],
        min_requests=1,
    )


@pytest.fixture
def key(transactional_db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod").key


def test_a_headroom_rule_fires_below_its_threshold_and_a_429_rule_counts_429s(key):
    ingest(
        key,
        calls("ok", 3, ratelimit_input_tokens_limit=400_000, ratelimit_input_tokens_remaining=360_000)
        + calls("low", 1, ratelimit_input_tokens_limit=400_000, ratelimit_input_tokens_remaining=20_000)
        + calls("rl", 2, status="error", http_status=429, error_type="rate_limit_error"),
    )
    rollup_until_current()
    headroom = rule(key, Metric.RATELIMIT_INPUT_TOKENS_HEADROOM_MIN, 0.10, "below")
    requests_headroom = rule(key, Metric.RATELIMIT_REQUESTS_HEADROOM_MIN, 0.10, "below")  # never reported
    limited = rule(key, Metric.RATE_LIMITED_REQUESTS, 1, "above")
    assert rule_windows(headroom, now=NOW, count=2)[0].value == 0.05  # 20000 / 400000
    assert rule_windows(requests_headroom, now=NOW, count=2)[0].value == 1.0  # nothing reported: not near a limit
    assert rule_windows(limited, now=NOW, count=2)[0].value == 2.0
    assert rules_evaluate(now=NOW) == {"opened": 2, "ok": 1}
    assert sorted(Incident.objects.values_list("rule__metric", "value")) == [
        ("rate_limited_requests", 2.0),
        ("ratelimit_input_tokens_headroom_min", 0.05),
    ]
    assert sorted(Notification.objects.values_list("subject", flat=True)) == [
        "[Tally] acme: rate-limit headroom (input tokens) 5.0% < 10.0%",
        "[Tally] acme: rate-limited calls (429) 2 > 1",
    ]


def test_ratelimit_metric_labels_and_format():
    assert METRIC_LABELS[Metric.RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN] == "rate-limit headroom (output tokens)"
    assert format_metric(Metric.RATELIMIT_REQUESTS_HEADROOM_MIN, 0.125) == "12.5%"
    assert format_metric(Metric.RATE_LIMITED_REQUESTS, 1234.0) == "1,234"
