"""The Latency page: online latency and time to first token, with Message Batches turnaround apart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rollups import sketch
from tests.dashboard.conftest import PASSWORD, SCREENSHOTS


def _value(ms: float) -> float:
    """What the histogram gives back for a single call of `ms`."""
    return sketch.bucket_value(sketch.bucket_of(ms))


@pytest.fixture
def with_batches(transactional_db, clean_events):  # type: ignore[no-untyped-def]
    """Two streamed online calls and a plain one (sonnet), two batch results (haiku) in an hour of their own."""
    from ingest.services import events_ingest
    from projects.services import ingest_key_create
    from rollups.services import rollup_until_current

    now = datetime.now(tz=UTC).replace(minute=30, second=0, microsecond=0) - timedelta(days=1)
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    base = {"input_tokens": 1000, "output_tokens": 100, "service": "digest"}
    events = [
        {
            **base,
            "request_id": "s1",
            "model": "claude-sonnet-4-6",
            "latency_ms": 1000,
            "time_to_first_token_ms": 200,
            "timestamp": now.isoformat(),
        },
        {
            **base,
            "request_id": "s2",
            "model": "claude-sonnet-4-6",
            "latency_ms": 3000,
            "time_to_first_token_ms": 400,
            "timestamp": (now + timedelta(minutes=1)).isoformat(),
        },
        {
            **base,
            "request_id": "s3",
            "model": "claude-sonnet-4-6",
            "latency_ms": 2000,
            "timestamp": (now + timedelta(minutes=2)).isoformat(),
        },
        {
            **base,
            "request_id": "b1",
            "model": "claude-haiku-4-5",
            "latency_ms": 1_200_000,
            "batch": True,
            "timestamp": (now - timedelta(hours=5)).isoformat(),
        },
        {
            **base,
            "request_id": "b2",
            "model": "claude-haiku-4-5",
            "latency_ms": 2_400_000,
            "batch": True,
            "timestamp": (now - timedelta(hours=5, minutes=-1)).isoformat(),
        },
    ]
    result = events_ingest(
        project_id=key.project_id, environment_id=key.environment_id, body={"events": events}, max_batch=1000
    )
    assert result.accepted == 5
    rollup_until_current()
    return now


def test_latency_is_of_online_calls_and_batch_turnaround_is_apart(logged_in, with_batches):
    response = logged_in.get("/latency", {"range": "7d"})
    assert response.status_code == 200
    page = response.context["page"]
    totals = page.totals
    assert (totals["requests"], totals["online_requests"], totals["batch_requests"]) == (5, 3, 2)
    assert totals["latency_avg_ms"] == 2000.0  # (1000 + 3000 + 2000) / 3, not the batches' 20-40 minutes
    assert totals["latency_p50_ms"] == _value(2000)
    assert totals["latency_p99_ms"] == _value(2000)  # rank floor(0.99 x 2) = 1 of 1000, 2000, 3000
    assert totals["ttft_p50_ms"] == _value(200)
    assert totals["ttft_p95_ms"] == _value(200)  # rank floor(0.95 x 1) = 0
    assert totals["batch_latency_avg_ms"] == 1_800_000.0
    models = {row.name: row for row in page.data["models"]}
    assert [row.name for row in page.data["models"]] == ["claude-sonnet-4-6", "claude-haiku-4-5"]
    haiku, sonnet = models["claude-haiku-4-5"], models["claude-sonnet-4-6"]
    assert (haiku.online_requests, haiku.batch_requests, haiku.latency_p95_ms, haiku.ttft_p95_ms) == (0, 2, None, None)
    assert haiku.batch_latency_avg_ms == 1_800_000.0
    assert (sonnet.online_requests, sonnet.latency_avg_ms, sonnet.batch_latency_avg_ms) == (3, 2000.0, None)
    # The day of the calls: online numbers and turnaround in the same bucket, gaps elsewhere.
    day = with_batches.astimezone(UTC).strftime("%Y-%m-%d 00:00")
    figures = response.context["figures"]
    percentiles = figures["percentiles"]["data"]
    i = percentiles[0]["x"].index(day)
    assert [t["name"] for t in percentiles] == ["P50", "P95", "P99"]
    assert percentiles[1]["y"][i] == round(_value(2000), 2)  # rank floor(0.95 x 2) = 1
    assert percentiles[2]["y"][i] == round(_value(2000), 2)
    assert percentiles[1]["y"][i - 1] is None
    ttft = figures["ttft"]["data"]
    assert [t["name"] for t in ttft] == ["P50", "P95"]
    assert ttft[0]["y"][i] == round(_value(200), 2)
    batch_days = [
        x
        for x, y in zip(figures["batch"]["data"][0]["x"], figures["batch"]["data"][0]["y"], strict=True)
        if y is not None
    ]
    batch_day = (with_batches - timedelta(hours=5)).astimezone(UTC).strftime("%Y-%m-%d 00:00")
    assert batch_days == [batch_day]
    assert figures["batch"]["data"][0]["y"][figures["batch"]["data"][0]["x"].index(batch_day)] == 30.0  # minutes
    body = response.content.decode()
    assert "Batch turnaround, average" in body
    assert "30.0 min" in body
    assert "2 batch calls" in body


def test_a_range_of_batch_calls_only_shows_no_latency_rather_than_zero(logged_in, with_batches):
    response = logged_in.get("/latency", {"range": "7d", "model": "claude-haiku-4-5"})
    totals = response.context["page"].totals
    assert (totals["requests"], totals["online_requests"]) == (2, 0)
    assert totals["latency_p95_ms"] is None
    assert totals["latency_avg_ms"] is None
    assert totals["ttft_p95_ms"] is None
    assert all(v is None for v in response.context["figures"]["percentiles"]["data"][1]["y"])


@pytest.mark.browser
def test_the_latency_page_draws_its_four_charts(live_server, with_batches, viewer_user, browser_page):
    page = browser_page
    page.goto(f"{live_server.url}/login?next=/latency")
    page.fill("#id_username", viewer_user.username)
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/latency")
    page.wait_for_load_state("networkidle")
    charts = page.locator("[data-figure]")
    assert charts.count() == 4
    for i in range(4):
        charts.nth(i).locator(".main-svg").first.wait_for(state="attached")
    ttft = json.loads(page.locator("script#fig-latency-ttft").text_content())
    assert [t["name"] for t in ttft["data"]] == ["P50", "P95"]
    assert page.locator("[data-kpi=batch_turnaround] .tile-value").text_content().strip() == "30.0 min"
    assert page.locator("[data-kpi=ttft_p50] .tile-value").text_content().strip() == f"{_value(200):,.0f} ms"
    page.screenshot(path=str(SCREENSHOTS / "latency-batches.png"), full_page=True)
    assert page.errors == [], page.errors
