from __future__ import annotations

import json
import logging

from django.test import Client

from projects.services import ingest_key_create
from tests.conftest import post_events


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_count_ingest_outcomes_and_pipeline_state(db):
    secret = ingest_key_create(project_slug="metricsproj", environment_name="prod").secret
    client = Client()
    label = 'tally_ingest_events_total{outcome="accepted",project="metricsproj"}'
    before = client.get("/metrics").content.decode()
    start = _metric(before, label) if label in before else 0.0
    events = [{"request_id": f"m{i}", "model": "claude-haiku-4-5", "latency_ms": 5} for i in range(3)]
    post_events(client, secret, {"events": [*events, {"request_id": "bad"}]})
    post_events(client, secret, {"events": events[:1]})
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/plain")
    text = resp.content.decode()
    assert _metric(text, label) == start + 3
    assert _metric(text, 'tally_ingest_events_total{outcome="rejected",project="metricsproj"}') >= 1
    assert _metric(text, 'tally_ingest_events_total{outcome="duplicate",project="metricsproj"}') >= 1
    assert _metric(text, "tally_rollup_pending_hours") == 1
    assert _metric(text, "tally_rollup_lag_seconds") >= 0
    assert "tally_ingest_request_seconds_bucket" in text
    for name in ("tally_email_failed", "tally_email_retrying", "tally_alert_evaluations", "tally_alert_incidents_open"):
        assert _metric(text, name) == 0


def test_every_response_carries_a_request_id_and_logs_are_json_with_it(db):
    client = Client()
    resp = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert resp["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz")["X-Request-ID"]
    assert len(generated) == 32
    from django.conf import settings

    handler_conf = settings.LOGGING["handlers"]["console"]
    assert handler_conf["formatter"] == "json"
    from logging.config import dictConfig

    dictConfig(settings.LOGGING)
    root = logging.getLogger()
    formatter = root.handlers[0].formatter
    record = logging.LogRecord("ingest.views", logging.WARNING, __file__, 1, "database unavailable", None, None)
    for log_filter in root.handlers[0].filters:
        log_filter.filter(record)
    line = json.loads(formatter.format(record))
    assert line["message"] == "database unavailable"
    assert line["level"] == "WARNING"
    assert line["logger"] == "ingest.views"
    assert line["request_id"] == "-"
