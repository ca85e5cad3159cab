"""Dashboard pages: login, filters, empty states, the explorer and the event detail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from ingest.models import Event

PAGES = ["/", "/spend", "/latency", "/errors", "/cache", "/events"]


def kpi(response, key: str):  # type: ignore[no-untyped-def]
    return next(k for k in response.context["page"].data["kpis"] if k.key == key)


@pytest.mark.parametrize("url", PAGES)
def test_every_page_is_200_for_a_logged_in_user(logged_in, seeded, url):
    response = logged_in.get(url)
    assert response.status_code == 200
    assert b"Data as of" in response.content or url == "/events"
    assert b"<script>" not in response.content  # no inline scripts: only json_script blobs and src= files


@pytest.mark.parametrize("url", [*PAGES, "/events/1"])
def test_anonymous_visitors_are_sent_to_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")


def test_overview_kpis_are_exact_and_compare_with_the_previous_period(logged_in, seeded):
    response = logged_in.get("/", {"range": "7d"})
    assert kpi(response, "requests").value == 6
    assert kpi(response, "requests").previous is None  # nothing before: no fake change
    assert kpi(response, "error_rate").value == pytest.approx(1 / 6)
    assert kpi(response, "cache_hit_rate").value == pytest.approx(1 / 6)
    breakdowns = response.context["page"].data["breakdowns"]
    assert {r.name: r.requests for r in breakdowns["model"]} == {
        "claude-sonnet-4-6": 3,
        "claude-haiku-4-5": 2,
        "claude-experimental-x": 1,
    }
    assert {r.name: r.requests for r in breakdowns["environment"]} == {"prod": 5, "dev": 1}
    assert {u.user_id: u.requests for u in response.context["page"].data["top_users"]} == {"u_1": 2, "u_2": 1}
    figures = response.context["figures"]
    assert sum(figures["requests"]["data"][0]["y"]) == 6
    assert b'id="fig-spend"' in response.content


def test_the_previous_period_is_the_same_length_just_before(logged_in, seeded):
    response = logged_in.get("/", {"range": "24h"})
    page = response.context["page"]
    start, end = page.data["previous"]
    assert end == page.filters.start
    assert end - start == page.filters.effective_end - page.filters.start == timedelta(hours=24)
    # req_old (26 h ago) is the previous period's only call.
    assert kpi(response, "requests").value == 5
    assert kpi(response, "requests").previous == 1
    assert kpi(response, "requests").change == pytest.approx(4.0)
    assert kpi(response, "latency_avg").previous == pytest.approx(2000)


def test_model_filter_changes_the_numbers(logged_in, seeded):
    everything = logged_in.get("/", {"range": "7d"})
    haiku = logged_in.get("/", {"range": "7d", "model": "claude-haiku-4-5"})
    assert kpi(everything, "requests").value == 6
    assert kpi(haiku, "requests").value == 2
    assert kpi(haiku, "latency_avg").value == pytest.approx(1025)
    assert sum(haiku.context["figures"]["requests"]["data"][0]["y"]) == 2
    assert [r.name for r in haiku.context["page"].data["breakdowns"]["model"]] == ["claude-haiku-4-5"]
    # The filter is kept in every navigation link.
    assert b"/spend?range=7d&amp;model=claude-haiku-4-5" in haiku.content


def test_environment_and_range_filters_apply(logged_in, seeded):
    dev = logged_in.get("/latency", {"environment": "dev"})
    assert dev.context["page"].totals["requests"] == 1
    assert dev.context["page"].totals["latency_p50_ms"] == pytest.approx(400, rel=0.01)
    day = logged_in.get("/", {"range": "24h"})
    assert day.context["page"].filters.granularity == "hour"
    assert len(day.context["figures"]["spend"]["data"][0]["x"]) == 24
    custom = logged_in.get("/", {"range": "custom", "from": "2020-01-01", "to": "2020-01-31"})
    assert custom.context["page"].range_empty
    assert b"No calls match these filters in this range" in custom.content


def test_a_bad_filter_is_ignored_with_a_message(logged_in, seeded):
    response = logged_in.get("/", {"from": "2026-02-30", "to": "yesterday"})
    assert response.status_code == 200
    assert response.context["filters"].range == "7d"
    assert b"from: &#x27;2026-02-30&#x27; is neither a date" in response.content
    backwards = logged_in.get("/", {"from": "2026-02-10T05:00:00Z", "to": "2026-02-10T04:00:00Z"})
    assert backwards.context["filters"].range == "7d"
    assert b"The range must end after it starts (to is before from)." in backwards.content


def test_spend_page_calls_out_unpriced_calls_and_projects_the_month(logged_in, seeded):
    response = logged_in.get("/spend")
    page = response.context["page"]
    assert page.totals["unpriced_requests"] == 1
    assert page.data["unpriced_models"] == [("claude-experimental-x", 1)]
    assert b"data-unpriced" in response.content
    mtd = page.data["mtd"]
    assert mtd.projected_usd == pytest.approx(mtd.spend_usd / mtd.days_elapsed * mtd.days_in_month)
    assert "Projection (linear)" in [t["name"] for t in response.context["figures"]["mtd"]["data"]]
    by_model = response.context["figures"]["by_model"]["data"]
    assert {t["name"] for t in by_model} >= {"claude-sonnet-4-6", "claude-haiku-4-5"}
    assert sum(sum(t["y"]) for t in by_model) == pytest.approx(page.totals["cost_usd"], abs=1e-5)


def test_errors_page_splits_errors_by_type_and_status(logged_in, seeded):
    response = logged_in.get("/errors")
    page = response.context["page"]
    assert page.data["type_totals"] == [("overloaded_error", 1)]
    assert dict(page.data["status_totals"]) == {"529": 1}  # failed calls only
    figures = response.context["figures"]
    assert [t["name"] for t in figures["by_type"]["data"]] == ["overloaded_error"]
    assert {t["name"] for t in figures["by_status"]["data"]} == {"HTTP 529"}


def test_errors_page_charts_rate_limit_headroom_per_model_and_marks_429s(logged_in, clean_events):
    from ingest.services import events_ingest
    from projects.services import ingest_key_create
    from rollups.services import rollup_until_current

    hour = datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    base = {"latency_ms": 300, "input_tokens": 10}
    events = [
        {
            **base,
            "request_id": "s1",
            "model": "claude-sonnet-4-6",
            "timestamp": hour.isoformat(),
            "ratelimit_requests_limit": 50,
            "ratelimit_requests_remaining": 40,  # 0.8
            "ratelimit_output_tokens_limit": 8000,
            "ratelimit_output_tokens_remaining": 2000,
        },  # 0.25: the tightest
        {
            **base,
            "request_id": "s2",
            "model": "claude-sonnet-4-6",
            "timestamp": (hour + timedelta(hours=1)).isoformat(),
            "status": "error",
            "http_status": 429,
            "error_type": "rate_limit_error",
            "ratelimit_requests_limit": 50,
            "ratelimit_requests_remaining": 0,
        },
        {
            **base,
            "request_id": "h1",
            "model": "claude-haiku-4-5",
            "timestamp": hour.isoformat(),
            "ratelimit_input_tokens_limit": 400_000,
            "ratelimit_input_tokens_remaining": 300_000,
        },  # 0.75
        {**base, "request_id": "x1", "model": "claude-opus-4-1", "timestamp": hour.isoformat()},  # no headers
    ]
    events_ingest(project_id=key.project_id, environment_id=key.environment_id, body={"events": events}, max_batch=1000)
    rollup_until_current()
    response = logged_in.get("/errors?range=24h")  # hourly buckets
    page = response.context["page"]
    buckets = page.series.buckets
    at, after = buckets.index(hour), buckets.index(hour + timedelta(hours=1))
    haiku, sonnet = [None] * len(buckets), [None] * len(buckets)
    haiku[at], sonnet[at], sonnet[after] = 0.75, 0.25, 0.0
    assert page.data["headroom"] == {"claude-haiku-4-5": haiku, "claude-sonnet-4-6": sonnet}
    assert page.data["rate_limited"] == [int(i == after) for i in range(len(buckets))]
    figure = response.context["figures"]["ratelimit"]
    assert [(t["name"], t["y"]) for t in figure["data"]] == [
        ("claude-haiku-4-5", [None if v is None else v * 100 for v in haiku]),
        ("claude-sonnet-4-6", [None if v is None else v * 100 for v in sonnet]),
        ("HTTP 429", [0]),
    ]
    assert figure["data"][2]["x"] == [(hour + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")]
    assert figure["data"][2]["text"] == ["1 rate-limited call"]
    assert b"Rate limits" in response.content


def test_cache_page_shows_hit_rate_cached_share_and_ttl_writes(logged_in, seeded):
    totals = logged_in.get("/cache").context["page"].totals
    assert totals["cache_hit_rate"] == pytest.approx(1 / 6)
    # 3000 read / (6 x 1000 input + 3000 read + 2000 written)
    assert totals["cached_share"] == pytest.approx(3000 / 11000)
    assert (totals["cache_write_5m_tokens"], totals["cache_write_1h_tokens"]) == (1500, 500)


def test_aggregate_pages_do_a_fixed_number_of_queries(logged_in, seeded, django_assert_max_num_queries):
    # Pages read aggregates with a handful of statements, however many events there are (the
    # overview: 2 per metrics call and range piece, 5 calls, the previous period in up to 3 pieces).
    for url in PAGES[:-1]:
        with django_assert_max_num_queries(26):
            logged_in.get(url)


def test_empty_project_shows_how_to_send_a_first_event(logged_in, project):
    response = logged_in.get("/")
    content = response.content.decode()
    assert "curl -X POST http://testserver/api/v1/events" in content
    assert "Authorization: Bearer &lt;key&gt;" in content
    assert "Content-Type: application/json" in content
    assert "&quot;request_id&quot;: &quot;req_1&quot;" in content or '"request_id": "req_1"' in content
    assert "python manage.py create_ingest_key --project acme --environment prod" in content
    assert response.context["figures"] == {}


def test_no_project_at_all_still_explains_the_first_steps(admin_client):
    # A fresh install: the superuser sees every project, and there is none yet.
    content = admin_client.get("/spend").content.decode()
    assert "create_ingest_key --project SLUG --environment prod" in content


@pytest.mark.parametrize("url", PAGES)
def test_a_user_without_membership_is_told_to_ask_for_access(client, django_user_model, seeded, url):
    client.force_login(django_user_model.objects.create_user("newcomer", password="pw-newcomer-1"))
    response = client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "You don't have access to any project yet" in content
    assert "acme" not in content
    assert "claude-sonnet-4-6" not in content


def test_project_selector_defaults_to_the_first_project_with_data(logged_in, viewer_user, seeded):
    from projects.models import Membership
    from projects.services import project_get_or_create

    Membership.objects.create(user=viewer_user, project=project_get_or_create(slug="aaa-empty"))
    response = logged_in.get("/")
    assert response.context["scope"].project.slug == "acme"
    assert b'name="project"' in response.content
    empty = logged_in.get("/", {"project": "aaa-empty"})
    assert empty.context["page"].empty


def test_explorer_finds_a_request_id(logged_in, seeded):
    response = logged_in.get("/events", {"request_id": "req_b"})
    page = response.context["page"]
    assert [e.request_id for e in page.events] == ["req_b"]
    assert b"req_b" in response.content
    missing = logged_in.get("/events", {"request_id": "req_nope"})
    assert missing.context["page"].events == []
    assert b"No stored call has request ID" in missing.content


def test_explorer_filters_by_status_model_and_environment(logged_in, seeded):
    def ids(**params):  # type: ignore[no-untyped-def]
        return [e.request_id for e in logged_in.get("/events", params).context["page"].events]

    # req_dev and req_c share a timestamp: the later id comes first.
    assert ids() == ["req_dev", "req_c", "req_a", "req_b", "req_x", "req_old"]
    assert ids(status="error") == ["req_b"]
    assert set(ids(model="claude-haiku-4-5")) == {"req_c", "req_old"}
    assert ids(environment="dev") == ["req_dev"]
    assert "req_old" not in ids(range="24h")


def test_explorer_paginates_newest_first_with_a_keyset_cursor(logged_in, transactional_db, clean_events):
    from ingest.services import events_ingest
    from projects.services import ingest_key_create

    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    now = datetime.now(tz=UTC).replace(microsecond=0)
    # Pairs share a timestamp, so the id tie-break matters.
    events = [
        {
            "request_id": f"r{i:03d}",
            "model": "claude-sonnet-4-6",
            "latency_ms": 10,
            "timestamp": (now - timedelta(minutes=i // 2)).isoformat(),
        }
        for i in range(120)
    ]
    events_ingest(project_id=key.project_id, environment_id=key.environment_id, body={"events": events}, max_batch=1000)
    seen: list[str] = []
    params: dict[str, str] = {}
    pages = 0
    while True:
        response = logged_in.get("/events", params)
        page = response.context["page"]
        pages += 1
        seen += [e.request_id for e in page.events]
        order = [(e.timestamp, e.pk) for e in page.events]
        assert order == sorted(order, reverse=True)
        if not page.next_cursor:
            break
        assert b'rel="next"' in response.content
        params = {"cursor": page.next_cursor}
    assert pages == 3
    assert len(seen) == len(set(seen)) == 120


def test_event_detail_shows_every_stored_field(logged_in, seeded):
    event = Event.objects.get(request_id="req_a")
    query = urlencode({"project": "acme", "t": event.timestamp.isoformat()})
    response = logged_in.get(f"/events/{event.pk}?{query}")
    assert response.status_code == 200
    content = response.content.decode()
    for name in (
        "request_id",
        "timestamp",
        "received_at",
        "model",
        "service",
        "latency_ms",
        "input_tokens",
        "cache_read_input_tokens",
        "cost_usd",
        "price_source",
        "metadata",
        "environment",
    ):
        assert f'data-field="{name}"' in content, name
    assert "eu-west" in content
    assert response.context["detail"].event.cost_usd > Decimal(0)
    # Without its timestamp the lookup is bounded by retention, and still finds it.
    assert logged_in.get(f"/events/{event.pk}", {"project": "acme"}).status_code == 200
    assert logged_in.get(f"/events/{event.pk + 1000}", {"project": "acme"}).status_code == 404
    assert (
        logged_in.get(f"/events/{event.pk}", {"project": "acme", "t": "2020-01-01T00:00:00+00:00"}).status_code == 404
    )


def test_explorer_links_to_the_detail_with_its_timestamp(logged_in, seeded):
    event = Event.objects.get(request_id="req_b")
    content = logged_in.get("/events", {"request_id": "req_b"}).content.decode()
    assert f"/events/{event.pk}?" in content
    assert "t=" in content


def test_explorer_of_an_empty_project_explains_the_first_steps(logged_in, project):
    content = logged_in.get("/events").content.decode()
    assert "create_ingest_key --project acme --environment prod" in content


def test_a_model_without_a_price_is_shown_as_unpriced_never_as_zero(logged_in, seeded):
    response = logged_in.get("/", {"model": "claude-experimental-x"})
    content = response.content.decode()
    assert kpi(response, "spend").value is None
    assert kpi(response, "spend").note == "excludes 1 unpriced"
    assert '<div class="tile-value">—</div>' in content
    [row] = response.context["page"].data["breakdowns"]["model"]
    assert row.cost_usd is None
    assert ">unpriced</span>" in content
    spend = response.context["figures"]["spend"]["data"][0]["y"]
    assert spend.count(None) == 1  # the day of the unpriced call is a gap, not a $0 bar
    assert set(spend) == {None, 0.0}
