"""The events explorer: each filter, each order, keyset pages, the CSV export and bad parameters.

Eight calls with known fields (`calls` below), ingested one at a time so their ids follow the
list (e7 ties e1 on latency, tokens and cost, and has the higher id, so it comes first).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.http import QueryDict

from dashboard import explorer
from dashboard.explorer import explorer_parse

SONNET, HAIKU, OPUS, UNPRICED = "claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7", "claude-experimental-x"


def _call(rid: str, hours_ago: float, now: datetime, **fields: Any) -> dict[str, Any]:
    event = {
        "request_id": rid,
        "timestamp": (now - timedelta(hours=hours_ago)).isoformat(),
        "model": SONNET,
        "service": "checkout",
        "latency_ms": 800,
        "input_tokens": 1000,
        "output_tokens": 100,
    }
    event.update(fields)
    return event


@dataclass
class Calls:
    now: datetime
    events: list[dict[str, Any]]
    env: dict[str, str]


@pytest.fixture
def calls(transactional_db, clean_events):  # type: ignore[no-untyped-def]
    from ingest.services import events_ingest
    from projects.services import ingest_key_create
    from rollups.services import rollup_until_current

    # Mid-hour, so "-1h" .. "-7h" stay inside the 24-hour range and e8 (-30h) outside it.
    now = datetime.now(tz=UTC).replace(minute=30, second=0, microsecond=0)
    if now > datetime.now(tz=UTC):
        now -= timedelta(hours=1)
    prod = ingest_key_create(project_slug="acme", environment_name="prod").key
    dev = ingest_key_create(project_slug="acme", environment_name="dev").key
    events = [
        _call("e1", 1, now, feature="refund", user_id="u_1", http_status=200, metadata={"region": "eu", "a": "1"}),
        _call(
            "e2",
            2,
            now,
            feature="refund",
            user_id="u_2",
            status="error",
            error_type="overloaded_error",
            http_status=529,
            latency_ms=3000,
            input_tokens=500,
            output_tokens=0,
        ),
        _call(
            "e3",
            3,
            now,
            service="search",
            feature="answer",
            user_id="u_1",
            model=HAIKU,
            latency_ms=120,
            input_tokens=20000,
            output_tokens=500,
        ),
        _call(
            "e4",
            4,
            now,
            service="search",
            feature="answer",
            batch=True,
            latency_ms=600000,
            input_tokens=50000,
            output_tokens=2000,
        ),
        _call("e5", 5, now, user_id="u_3", model=UNPRICED, latency_ms=900, input_tokens=3000, output_tokens=300),
        _call(
            "e6",
            6,
            now,
            feature="refund",
            user_id="u_2",
            status="error",
            error_type="rate_limit_error",
            http_status=429,
            latency_ms=40,
            input_tokens=0,
            output_tokens=0,
        ),
        _call("e7", 7, now, service="search", feature="answer", user_id="u_1"),
        _call(
            "e8",
            30,
            now,
            feature="refund",
            user_id="u_1",
            model=OPUS,
            latency_ms=5000,
            input_tokens=100000,
            output_tokens=1000,
        ),
    ]
    env = {rid: "prod" for rid in ("e1", "e2", "e3", "e5", "e6", "e7", "e8")} | {"e4": "dev"}
    for event in events:
        key = dev if env[event["request_id"]] == "dev" else prod
        result = events_ingest(
            project_id=key.project_id, environment_id=key.environment_id, body={"events": [event]}, max_batch=1000
        )
        assert result.accepted == 1, result.rejected
    rollup_until_current()
    return Calls(now=now, events=events, env=env)


def ids(client, **params: Any) -> list[str]:  # type: ignore[no-untyped-def]
    response = client.get("/events", {"project": "acme", **params})
    assert response.status_code == 200
    return [e.request_id for e in response.context["page"].events]


TIME = ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"]
ORDERS = {
    "time": TIME,
    "latency": ["e4", "e8", "e2", "e5", "e7", "e1", "e3", "e6"],
    "cost": ["e8", "e4", "e3", "e7", "e1", "e2", "e6", "e5"],  # unpriced e5 last
    "tokens": ["e8", "e4", "e3", "e5", "e7", "e1", "e2", "e6"],
}


@pytest.mark.parametrize("sort", list(ORDERS))
def test_each_order_is_exact_with_ties_broken_by_the_later_id(logged_in, calls, sort):
    assert ids(logged_in, sort=sort) == ORDERS[sort]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"user": "u_1"}, ["e1", "e3", "e7", "e8"]),
        ({"user": "u_nobody"}, []),
        ({"feature": "refund"}, ["e1", "e2", "e6", "e8"]),
        ({"error_type": "overloaded_error"}, ["e2"]),
        ({"http_status": "429"}, ["e6"]),
        ({"status": "error"}, ["e2", "e6"]),
        ({"status": "ok"}, ["e1", "e3", "e4", "e5", "e7", "e8"]),
        ({"kind": "batch"}, ["e4"]),
        ({"kind": "online"}, ["e1", "e2", "e3", "e5", "e6", "e7", "e8"]),
        ({"min_latency_ms": "900"}, ["e2", "e4", "e5", "e8"]),
        ({"min_latency_ms": "900.5"}, ["e2", "e4", "e8"]),
        ({"min_cost_usd": "0.01"}, ["e3", "e4", "e8"]),
        ({"min_cost_usd": "0"}, ["e1", "e2", "e3", "e4", "e6", "e7", "e8"]),  # unpriced has no cost to compare
        ({"environment": "dev"}, ["e4"]),
        ({"environment": "qa"}, []),
        ({"service": "search"}, ["e3", "e4", "e7"]),
        ({"model": HAIKU}, ["e3"]),
        ({"range": "24h"}, TIME[:-1]),
        ({"request_id": "e5"}, ["e5"]),
        ({"request_id": "e8", "range": "24h"}, ["e8"]),  # an id is looked up wherever it is in time
        ({"request_id": "e5", "service": "search"}, []),  # but the other filters still apply
        ({"request_id": "nope"}, []),
        ({"feature": "refund", "range": "24h", "sort": "cost"}, ["e1", "e2", "e6"]),
        ({"user": "u_1", "sort": "latency", "kind": "online"}, ["e8", "e7", "e1", "e3"]),
        ({"service": "search", "min_latency_ms": "100", "sort": "tokens"}, ["e4", "e3", "e7"]),
    ],
)
def test_each_filter_gives_exactly_its_calls(logged_in, calls, params, expected):
    assert ids(logged_in, **params) == expected


@pytest.mark.parametrize("sort", list(ORDERS))
@pytest.mark.parametrize("page_size", [1, 2, 3, 4, 7, 8])
def test_keyset_pages_concatenate_to_the_whole_order(logged_in, calls, monkeypatch, sort, page_size):
    """Through the view and its cursor links: no duplicate, no gap, including across the e7/e1 tie."""
    monkeypatch.setattr(explorer, "PAGE_SIZE", page_size)
    seen: list[str] = []
    params: dict[str, str] = {"project": "acme", "sort": sort}
    for _ in range(20):
        response = logged_in.get("/events", params)
        page = response.context["page"]
        assert len(page.events) <= page_size
        seen += [e.request_id for e in page.events]
        if not page.next_cursor:
            break
        assert 'rel="next"' in response.content.decode()
        params = dict(QueryDict(page.next_querystring).items())
    assert seen == ORDERS[sort]


def test_keyset_pages_of_a_filtered_selection(logged_in, calls, monkeypatch):
    monkeypatch.setattr(explorer, "PAGE_SIZE", 1)
    seen = []
    params: dict[str, str] = {"project": "acme", "sort": "cost", "feature": "refund", "kind": "online"}
    while True:
        page = logged_in.get("/events", params).context["page"]
        seen += [e.request_id for e in page.events]
        if not page.next_cursor:
            break
        params = dict(QueryDict(page.next_querystring).items())
        assert params["feature"] == "refund"  # the links keep the filters
    assert seen == ["e8", "e1", "e2", "e6"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("time", ["e1", "e3", "e7", "e8"]),
        ("cost", ["e8", "e3", "e7", "e1"]),
        ("latency", ["e8", "e7", "e1", "e3"]),
        ("tokens", ["e8", "e3", "e7", "e1"]),
    ],
)
def test_keyset_pages_of_one_user_in_every_order(logged_in, calls, monkeypatch, sort, expected):
    """A user's selection is read through the user index and sorted (explorer `few_rows`): same pages."""
    monkeypatch.setattr(explorer, "PAGE_SIZE", 1)
    seen = []
    params: dict[str, str] = {"project": "acme", "sort": sort, "user": "u_1"}
    while True:
        page = logged_in.get("/events", params).context["page"]
        seen += [e.request_id for e in page.events]
        if not page.next_cursor:
            break
        params = dict(QueryDict(page.next_querystring).items())
    assert seen == expected


def test_many_equal_keys_page_without_loss(logged_in, transactional_db, clean_events, monkeypatch):
    """120 calls equal in latency, tokens and cost, in pairs of equal timestamps: only ids order them."""
    from ingest.services import events_ingest
    from projects.services import ingest_key_create

    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    now = datetime.now(tz=UTC).replace(microsecond=0)
    events = [
        {
            "request_id": f"r{i:03d}",
            "model": SONNET,
            "latency_ms": 10,
            "input_tokens": 7,
            "timestamp": (now - timedelta(minutes=i // 2)).isoformat(),
        }
        for i in range(120)
    ]
    events_ingest(project_id=key.project_id, environment_id=key.environment_id, body={"events": events}, max_batch=1000)
    monkeypatch.setattr(explorer, "PAGE_SIZE", 7)
    for sort in ORDERS:
        seen, params = [], {"project": "acme", "sort": sort}
        while True:
            page = logged_in.get("/events", params).context["page"]
            seen += [(e.id, e.request_id) for e in page.events]
            if not page.next_cursor:
                break
            params = dict(QueryDict(page.next_querystring).items())
        assert len(seen) == len(set(seen)) == 120, sort
        if sort != "time":
            assert [i for i, _ in seen] == sorted((i for i, _ in seen), reverse=True), sort


def test_bad_parameters_are_named_and_ignored_on_the_page(logged_in, calls):
    response = logged_in.get(
        "/events",
        {
            "project": "acme",
            "http_status": "abc",
            "min_cost_usd": "-1",
            "sort": "price",
            "kind": "nightly",
            "min_latency_ms": "1e999",
            "cursor": "garbage",
        },
    )
    assert response.status_code == 200
    page = response.context["page"]
    assert [e.request_id for e in page.events] == TIME
    content = response.content.decode()
    for name in ("http_status", "min_cost_usd", "sort", "kind", "min_latency_ms"):
        assert f"Ignored: {name}:" in content, name


def test_a_cursor_of_another_order_is_refused_not_misread():
    parsed = explorer_parse(QueryDict("sort=cost&cursor=2026-11-26T10:00:00Z_42"))
    assert parsed.cursor is None
    assert parsed.errors == ("cursor: not a cursor of the 'cost' order; starting from the first page.",)
    assert explorer_parse(QueryDict("sort=latency&cursor=812.5_42")).cursor == (812.5, 42)
    assert explorer_parse(QueryDict("sort=cost&cursor=-1_9")).cursor == (-1, 9)
    assert explorer_parse(QueryDict("cursor=2026-11-26T10:00:00.123456Z_42")).cursor == (
        datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC),
        42,
    )


def test_cursors_round_trip_exactly():
    stamp = datetime(2026, 11, 26, 10, 0, 0, 5, tzinfo=UTC)
    for sort, key in (
        ("time", stamp),
        ("latency", 0.1 + 0.2),
        ("latency", 3e-7),
        ("cost", 450000000),
        ("tokens", 0),
        ("cost", -1),
    ):
        parsed = explorer_parse(QueryDict(f"sort={sort}&cursor={explorer.cursor_format(sort, key, 17)}"))
        assert parsed.cursor == (key, 17), (sort, key)


# --- CSV ------------------------------------------------------------------------------------------


def csv_of(client, **params: Any) -> tuple[Any, list[list[str]]]:  # type: ignore[no-untyped-def]
    response = client.get("/events", {"project": "acme", "format": "csv", **params})
    if response.status_code != 200:
        return response, []
    text = b"".join(response.streaming_content).decode()
    return response, list(csv.reader(io.StringIO(text)))


def test_csv_is_the_whole_selection_exactly(logged_in, calls, monkeypatch):
    from ingest.models import Event

    monkeypatch.setattr(explorer, "CSV_CHUNK", 2)  # four keyset reads for 7 rows
    response, rows = csv_of(logged_in, feature="refund", sort="cost")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="tally-calls-acme-')
    assert rows[0] == list(explorer.CSV_HEADER)
    stored = {e.request_id: e for e in Event.objects.filter(request_id__in=["e1", "e2", "e6", "e8"])}

    def stamp(rid: str) -> str:
        return stored[rid].timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def cost(rid: str) -> str:
        return format(stored[rid].cost_usd.normalize(), "f")

    assert cost("e1") == "0.0045"  # 1000 x $3/M + 100 x $15/M
    assert cost("e2") == "0.0015"
    assert cost("e6") == "0"
    price = stored["e8"].price_source
    assert rows[1:] == [
        [
            stamp("e8"),
            "e8",
            "prod",
            "checkout",
            "refund",
            "u_1",
            OPUS,
            "anthropic",
            "ok",
            "",
            "",
            "",
            "false",
            "",
            "5000",
            "",
            "100000",
            "1000",
            "0",
            "0",
            "0",
            "0",
            "101000",
            cost("e8"),
            "0",
            "",
            price,
            "",
            str(stored["e8"].pk),
        ],
        [
            stamp("e1"),
            "e1",
            "prod",
            "checkout",
            "refund",
            "u_1",
            SONNET,
            "anthropic",
            "ok",
            "",
            "200",
            "",
            "false",
            "",
            "800",
            "",
            "1000",
            "100",
            "0",
            "0",
            "0",
            "0",
            "1100",
            "0.0045",
            "0",
            "",
            stored["e1"].price_source,
            '{"a":"1","region":"eu"}',
            str(stored["e1"].pk),
        ],
        [
            stamp("e2"),
            "e2",
            "prod",
            "checkout",
            "refund",
            "u_2",
            SONNET,
            "anthropic",
            "error",
            "overloaded_error",
            "529",
            "",
            "false",
            "",
            "3000",
            "",
            "500",
            "0",
            "0",
            "0",
            "0",
            "0",
            "500",
            "0.0015",
            "0",
            "",
            stored["e2"].price_source,
            "",
            str(stored["e2"].pk),
        ],
        [
            stamp("e6"),
            "e6",
            "prod",
            "checkout",
            "refund",
            "u_2",
            SONNET,
            "anthropic",
            "error",
            "rate_limit_error",
            "429",
            "",
            "false",
            "",
            "40",
            "",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "",
            stored["e6"].price_source,
            "",
            str(stored["e6"].pk),
        ],
    ]


def test_csv_keeps_the_order_and_every_filter(logged_in, calls, monkeypatch):
    monkeypatch.setattr(explorer, "CSV_CHUNK", 3)
    for sort, expected in ORDERS.items():
        _, rows = csv_of(logged_in, sort=sort)
        assert [r[1] for r in rows[1:]] == expected, sort
    _, rows = csv_of(logged_in, user="u_1", kind="online", sort="latency")
    assert [r[1] for r in rows[1:]] == ["e8", "e7", "e1", "e3"]
    _, rows = csv_of(logged_in, environment="qa")
    assert rows == [list(explorer.CSV_HEADER)]


def test_csv_neutralises_spreadsheet_formulas_in_client_text(logged_in, transactional_db, clean_events):
    from ingest.services import events_ingest
    from projects.services import ingest_key_create

    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    events_ingest(
        project_id=key.project_id,
        environment_id=key.environment_id,
        max_batch=10,
        body={"request_id": "=HYPERLINK(1)", "model": SONNET, "latency_ms": 5, "user_id": "@bob", "feature": "-x"},
    )
    _, rows = csv_of(logged_in)
    assert rows[1][1] == "'=HYPERLINK(1)"
    assert (rows[1][4], rows[1][5]) == ("'-x", "'@bob")


def test_csv_refuses_bad_parameters_with_a_400_naming_them(logged_in, calls):
    response, _ = csv_of(logged_in, http_status="abc", sort="price")
    assert response.status_code == 400
    text = response.content.decode()
    assert text.startswith("Cannot export: ")
    assert "http_status: Enter a whole number." in text
    assert "sort: Select a valid choice. price is not one of the available choices." in text
    bad_range, _ = csv_of(logged_in, range="custom", **{"from": "2026-13-01", "to": "2026-12-01"})
    assert bad_range.status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"feature": "refund"},
        {"feature": "answer", "environment": "prod"},
        {"service": "search"},
        {"model": SONNET},
        {"environment": "dev"},
    ],
)
def test_csv_row_count_equals_the_metrics_api_requests(logged_in, calls, params):
    """The export and the aggregates count the same calls for the same filters and range."""
    first = (calls.now - timedelta(days=3)).date().isoformat()
    last = calls.now.date().isoformat()
    _, rows = csv_of(logged_in, range="custom", **{"from": first, "to": last}, **params)
    api = logged_in.get("/api/v1/metrics", {"project": "acme", "from": first, "to": last, **params})
    assert api.status_code == 200
    requests = api.json()["totals"]["requests"]
    assert len(rows) - 1 == requests
    assert requests > 0


def test_an_empty_project_exports_no_project_message(client, django_user_model):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user("nobody", "n@example.com", "pw-nobody-123")
    client.force_login(user)
    response = client.get("/events", {"format": "csv"})
    assert response.status_code == 400
    assert response.content.decode() == "Cannot export: no project that you can see\n"


def test_csv_of_a_project_you_cannot_see_is_refused_not_swapped(logged_in, calls):
    response, _ = csv_of(logged_in, project="someone-elses")
    assert response.status_code == 400
    assert response.content.decode() == ("Cannot export: no project 'someone-elses' that you can see\n")


# --- the page -------------------------------------------------------------------------------------


def test_page_offers_the_questions_and_the_export_of_its_selection(logged_in, calls):
    response = logged_in.get("/events", {"project": "acme", "feature": "refund", "sort": "cost"})
    content = response.content.decode()
    page = response.context["page"]
    assert "Calls, most expensive first" in content
    assert f'href="?{page.csv_querystring}"' in content.replace("&amp;", "&")
    assert QueryDict(page.csv_querystring).dict() == {
        "project": "acme",
        "range": "7d",
        "feature": "refund",
        "sort": "cost",
        "format": "csv",
    }
    yesterday = (calls.now - timedelta(days=1)).date().isoformat()
    asks = dict(page.asks)
    assert QueryDict(asks["Most expensive calls yesterday"]).dict() == {
        "project": "acme",
        "feature": "refund",
        "range": "custom",
        "from": yesterday,
        "to": yesterday,
        "sort": "cost",
    }
    assert page.features == ["answer", "refund"]


def test_a_rare_feature_is_read_from_its_hours_only_including_hours_not_yet_rolled_up(logged_in, calls):
    from ingest.services import events_ingest
    from projects.services import ingest_key_create
    from rollups.selectors import hours_with_calls

    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    # Committed but not rolled up: only its dirty-hour marker says where it is.
    late = _call("e9", 3.5, calls.now, feature="refund", input_tokens=10)
    assert (
        events_ingest(
            project_id=key.project_id, environment_id=key.environment_id, body={"events": [late]}, max_batch=1000
        ).accepted
        == 1
    )
    start, end = calls.now - timedelta(days=7), calls.now + timedelta(hours=1)
    hours = hours_with_calls(project_id=key.project_id, start=start, end=end, filters={"feature": "refund"}, limit=48)
    hour = calls.now.replace(minute=0)
    assert hours == [
        hour - timedelta(hours=30),
        hour - timedelta(hours=6),
        hour - timedelta(hours=3),
        hour - timedelta(hours=2),
        hour - timedelta(hours=1),
    ]
    assert (
        hours_with_calls(project_id=key.project_id, start=start, end=end, filters={"feature": "refund"}, limit=4)
        is None
    )  # more hours than the limit: not rare
    assert ids(logged_in, feature="refund") == ["e1", "e2", "e9", "e6", "e8"]  # e9: 3.5 h ago
    assert ids(logged_in, feature="nobody-uses-this") == []


@pytest.mark.parametrize("sort", ["time", "latency", "cost", "tokens"])
def test_reading_a_features_hours_gives_what_the_whole_range_gives(logged_in, calls, monkeypatch, sort):
    expected = [rid for rid in ORDERS[sort] if rid in ("e3", "e4", "e7")]  # feature "answer"
    assert ids(logged_in, feature="answer", sort=sort) == expected
    monkeypatch.setattr(explorer, "RARE_HOURS", 0)  # every feature is "common": the range is read whole
    assert ids(logged_in, feature="answer", sort=sort) == expected
