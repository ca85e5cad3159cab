"""Every dimension on every page: feature and user filters, By feature, cache per service and model,
the previous period, and links from rows to the calls behind them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from dashboard import charts


def kpi(response, key: str):  # type: ignore[no-untyped-def]
    return next(k for k in response.context["page"].data["kpis"] if k.key == key)


def test_feature_filter_and_by_feature_breakdowns(logged_in, seeded):
    response = logged_in.get("/", {"feature": "summarize"})
    assert kpi(response, "requests").value == 2
    assert kpi(response, "error_rate").value == pytest.approx(0.5)
    overview = logged_in.get("/").context["page"].data["breakdowns"]["feature"]
    assert {r.name: r.requests for r in overview} == {"summarize": 2, "chat": 1, "(none)": 3}
    spend = logged_in.get("/spend").context["page"].data["features"]
    assert {r.name: r.requests for r in spend} == {"summarize": 2, "chat": 1, "(none)": 3}
    content = logged_in.get("/spend").content.decode()
    assert "data-by-feature" in content
    assert 'value="summarize"' in logged_in.get("/latency").content.decode()  # a filter on every page


def test_user_filter_reads_per_user_spend_and_says_what_it_cannot_filter(logged_in, seeded):
    response = logged_in.get("/", {"user": "u_1"})
    page = response.context["page"]
    # req_a (2 h ago) and req_old (26 h ago): per-user spend keeps requests, errors and spend per day.
    assert page.totals["requests"] == 2
    assert page.totals["errors"] == 0
    assert page.totals["latency_p95_ms"] is None
    assert kpi(response, "cache_hit_rate").value is None
    assert page.granularity == "day"
    figures = response.context["figures"]
    assert sum(figures["requests"]["data"][0]["y"]) == 2
    assert figures["latency"]["layout"]["annotations"][0]["text"] == charts.NOT_PER_USER
    assert [u.user_id for u in page.data["top_users"]] == ["u_1"]
    assert b"data-per-user" in response.content
    errors = logged_in.get("/errors", {"user": "u_2"}).context["page"]
    assert (errors.totals["requests"], errors.totals["errors"], errors.totals["error_rate"]) == (1, 1, 1.0)
    cache = logged_in.get("/cache", {"user": "u_1"})
    assert cache.context["page"].totals["cache_hit_rate"] is None
    assert b"Prompt caching is not kept per end user" in cache.content


def test_compare_overlays_the_previous_period_bucket_for_bucket(logged_in, seeded):
    figures = logged_in.get("/", {"range": "24h", "compare": "1"}).context["figures"]
    [previous] = [t for t in figures["requests"]["data"] if (t.get("meta") or {}).get("kind") == "previous"]
    # The 24 hours before: req_old (26 h ago) only.
    assert len(previous["y"]) == 24
    assert sum(previous["y"]) == 1
    assert previous["x"] == figures["requests"]["data"][0]["x"]
    old_hour = (seeded.now - timedelta(hours=26)).replace(minute=0, second=0)
    assert previous["customdata"][previous["y"].index(1)] == old_hour.strftime("%Y-%m-%dT%H:%M:%SZ")
    spend = logged_in.get("/spend", {"range": "24h", "compare": "1"}).context["figures"]["by_model"]
    assert [t["name"] for t in spend["data"] if (t.get("meta") or {}).get("kind") == "previous"] == ["Previous period"]
    plain = logged_in.get("/", {"range": "24h"}).context["figures"]["requests"]
    assert all((t.get("meta") or {}).get("kind") != "previous" for t in plain["data"])


def _calls_links(content: str) -> list[dict[str, list[str]]]:
    import re

    return [
        parse_qs(urlsplit(href.replace("&amp;", "&")).query)
        for href in re.findall(r'href="(/events\?[^"]+)" data-calls', content)
    ]


def test_rows_link_to_their_calls_with_the_page_range_and_filters(logged_in, seeded):
    response = logged_in.get("/errors", {"project": "acme", "environment": "prod"})
    filters = response.context["filters"]
    window = {
        "from": [filters.start.strftime("%Y-%m-%dT%H:%M:%SZ")],
        "to": [filters.end.strftime("%Y-%m-%dT%H:%M:%SZ")],
    }
    links = _calls_links(response.content.decode())
    base = {"project": ["acme"], **window, "environment": ["prod"]}
    assert {**base, "status": ["error"]} in links
    assert {**base, "status": ["error"], "error_type": ["overloaded_error"]} in links
    assert {**base, "status": ["error"], "http_status": ["529"]} in links
    overview = _calls_links(logged_in.get("/", {"project": "acme"}).content.decode())
    week = logged_in.get("/").context["filters"]
    week_window = {"from": [week.start.strftime("%Y-%m-%dT%H:%M:%SZ")], "to": [week.end.strftime("%Y-%m-%dT%H:%M:%SZ")]}
    assert {"project": ["acme"], **week_window, "model": ["claude-haiku-4-5"]} in overview
    assert {"project": ["acme"], **week_window, "feature": ["summarize"]} in overview
    assert {"project": ["acme"], **week_window, "user": ["u_1"]} in overview


@pytest.fixture
def cache_calls(transactional_db, clean_events):  # type: ignore[no-untyped-def]
    """Service chat reads its cache back (1,000 written, 9,000 read on Sonnet); service recs writes
    10,000 5-minute cache tokens on Haiku and never reads them."""
    from ingest.services import events_ingest
    from projects.services import ingest_key_create
    from rollups.services import rollup_until_current

    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    at = (datetime.now(tz=UTC) - timedelta(hours=1)).isoformat()
    base = {"latency_ms": 100, "timestamp": at, "input_tokens": 100, "output_tokens": 10}
    events = [
        {
            **base,
            "request_id": "w1",
            "model": "claude-sonnet-4-6",
            "service": "chat",
            "cache_creation_input_tokens": 1000,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000},
        },
        *(
            {
                **base,
                "request_id": f"r{i}",
                "model": "claude-sonnet-4-6",
                "service": "chat",
                "cache_read_input_tokens": 3000,
            }
            for i in range(3)
        ),
        *(
            {
                **base,
                "request_id": f"x{i}",
                "model": "claude-haiku-4-5",
                "service": "recs",
                "cache_creation_input_tokens": 5000,
                "cache_creation": {"ephemeral_5m_input_tokens": 5000},
            }
            for i in range(2)
        ),
    ]
    result = events_ingest(
        project_id=key.project_id, environment_id=key.environment_id, body={"events": events}, max_batch=1000
    )
    assert result.accepted == 6
    rollup_until_current()


def test_cache_page_breaks_down_by_service_and_model_and_calls_out_wasted_writes(logged_in, cache_calls):
    response = logged_in.get("/cache")
    page = response.context["page"]
    by_service = {r.name: r for r in page.data["by_service"]}
    chat, recs = by_service["chat"], by_service["recs"]
    assert (chat.requests, chat.cache_hits, chat.read_tokens, chat.written_tokens) == (4, 3, 9000, 1000)
    assert chat.hit_rate == 0.75
    assert chat.read_write_ratio == 9.0
    # Sonnet: input $3/MTok, 5-minute write $3.75, read $0.30: 9,000 x 2.70 - 1,000 x 0.75 per MTok.
    assert Decimal(str(chat.saved_usd)) == Decimal("0.02355")
    assert (recs.read_tokens, recs.written_tokens, recs.read_write_ratio) == (0, 10000, 0.0)
    # Haiku: input $1/MTok, 5-minute write $1.25: 10,000 x -0.25 per MTok.
    assert Decimal(str(recs.saved_usd)) == Decimal("-0.0025")
    assert [r.name for r in page.data["wasted"]] == ["recs"]
    assert [r.name for r in page.data["by_model"] if r.wasted_writes] == ["claude-haiku-4-5"]
    content = response.content.decode()
    assert 'data-wasted="recs"' in content
    assert "pays the cache-write premium for nothing" in content
    assert "-$0.0025" in content
