"""Latency rules judge online calls only; P95 time to first token is a rule metric like the others."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from alerts.formatting import METRIC_LABELS, format_metric
from alerts.models import AlertRule, Incident, Metric, Notification
from alerts.selectors import rule_windows
from alerts.services import rules_evaluate
from projects.services import ingest_key_create
from rollups import sketch
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


def rule(key, metric: str, threshold: float, **fields) -> AlertRule:  # type: ignore[no-untyped-def]
    return AlertRule.objects.create(
        project=key.project,
        name=f"{metric} per hour",
        metric=metric,
        window="hour",
        condition="above",
        threshold=threshold,
        recipients=["oncall@example.com"],
        **fields,
    )


@pytest.fixture
def key(transactional_db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod").key


def test_a_p95_rule_is_not_fired_by_batch_results(key):
    ingest(key, calls("o", 30) + calls("b", 30, latency_ms=1_800_000, batch=True))
    rollup_until_current()
    p95 = rule(key, "latency_p95_ms", 1000.0)
    avg = rule(key, "latency_avg_ms", 1000.0)
    assert rules_evaluate(now=NOW) == {"ok": 2}
    closed = rule_windows(p95, now=NOW, count=2)[0]
    assert (closed.requests, closed.row.requests) == (30, 60)  # judged on the 30 online calls
    assert closed.value == sketch.bucket_value(sketch.bucket_of(500))
    assert rule_windows(avg, now=NOW, count=2)[0].value == 500.0
    assert Incident.objects.count() == 0


def test_the_volume_guard_counts_online_calls_only(key):
    # 5 online calls at 3 s and 40 batch results: too few online calls to judge (min_requests 20).
    ingest(key, calls("o", 5, latency_ms=3000) + calls("b", 40, latency_ms=900_000, batch=True))
    rollup_until_current()
    rule(key, "latency_p95_ms", 1000.0)
    assert rules_evaluate(now=NOW) == {"ok": 1}
    assert Incident.objects.count() == 0


def test_ttft_p95_rule_opens_an_incident_and_names_the_metric(key):
    ingest(
        key,
        calls("s", 25, time_to_first_token_ms=2400)
        + calls("n", 10)
        + calls("b", 10, batch=True, time_to_first_token_ms=10),
    )
    rollup_until_current()
    ttft = rule(key, "ttft_p95_ms", 1500.0)
    windows = rule_windows(ttft, now=NOW, count=2)
    assert windows[0].requests == 25  # the online calls that reported a time to first token
    assert (windows[1].requests, windows[1].value) == (0, 0.0)  # the current hour: nothing reported
    assert rules_evaluate(now=NOW) == {"opened": 1}
    incident = Incident.objects.get()
    assert incident.value == sketch.bucket_value(sketch.bucket_of(2400))
    assert incident.threshold == 1500.0
    subject = Notification.objects.get().subject
    assert subject == "[Tally] acme: P95 time to first token 2.4 s > 1.5 s"  # no environment in scope


def test_ttft_rule_labels_and_format():
    assert METRIC_LABELS[Metric.TTFT_P95_MS] == "P95 time to first token"
    assert format_metric("ttft_p95_ms", 812.4) == "812 ms"
    assert format_metric("ttft_p95_ms", 2400.0) == "2.4 s"
    assert format_metric("ttft_p95_ms", None) == "n/a"


def test_the_api_accepts_ttft_p95_ms_rules(key):
    admin = ingest_key_create(project_slug="acme", environment_name="prod", scope="admin").secret
    body = {
        "name": "TTFT",
        "metric": "ttft_p95_ms",
        "window": "hour",
        "condition": "above",
        "threshold": 1500,
        "recipients": ["oncall@example.com"],
    }
    resp = Client().post(
        "/api/v1/alert-rules", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {admin}"
    )
    assert resp.status_code == 201, resp.content
    assert resp.json()["metric"] == "ttft_p95_ms"
    assert AlertRule.objects.get().metric == Metric.TTFT_P95_MS
