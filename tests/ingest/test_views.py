"""POST /api/v1/events against CONTRACT §3: every field rule and status code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client

from ingest.models import DirtyHour, Event
from projects.models import IngestKey
from projects.services import ingest_key_create, ingest_key_revoke
from tests.conftest import post_events

NOW = datetime.now(tz=UTC)


def ev(request_id: str = "req_1", **fields):  # type: ignore[no-untyped-def]
    event = {
        "request_id": request_id,
        "model": "claude-sonnet-4-6",
        "latency_ms": 812.5,
        "input_tokens": 1200,
        "output_tokens": 300,
    }
    event.update(fields)
    return event


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    return Client()


def test_single_event_is_accepted_with_every_field_stored(client, ingest_key):
    secret, key = ingest_key
    ts = (NOW - timedelta(hours=2)).replace(microsecond=0)
    body = ev(
        "req_full",
        timestamp=ts.isoformat().replace("+00:00", "Z"),
        cache_read_input_tokens=5000,
        cache_creation_input_tokens=100,
        cache_creation={"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60},
        status="error",
        error_type="overloaded_error",
        http_status=529,
        stop_reason="end_turn",
        service="checkout",
        feature="cart-summary",
        user_id="u_42",
        provider="anthropic",
        batch=False,
        service_tier="standard",
        time_to_first_token_ms=120.5,
        cost_usd=0.0123,
        metadata={"region": "eu", "build": "1.2.3"},
    )
    resp = post_events(client, secret, body)
    assert resp.status_code == 202, resp.content
    assert resp.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    stored = Event.objects.get(request_id="req_full")
    assert stored.project_id == key.project_id
    assert stored.environment_id == key.environment_id
    assert stored.timestamp == ts
    assert (stored.model, stored.service, stored.feature, stored.user_id) == (
        "claude-sonnet-4-6",
        "checkout",
        "cart-summary",
        "u_42",
    )
    assert (stored.status, stored.error_type, stored.http_status, stored.stop_reason) == (
        "error",
        "overloaded_error",
        529,
        "end_turn",
    )
    assert (stored.input_tokens, stored.output_tokens, stored.cache_read_input_tokens) == (1200, 300, 5000)
    assert (stored.cache_creation_input_tokens, stored.cache_write_5m_tokens, stored.cache_write_1h_tokens) == (
        100,
        40,
        60,
    )
    assert stored.latency_ms == 812.5
    assert stored.time_to_first_token_ms == 120.5
    assert stored.service_tier == "standard"
    assert stored.batch is False
    assert stored.client_cost_usd == Decimal("0.0123")
    assert stored.metadata == {"region": "eu", "build": "1.2.3"}
    # Server price: $3/MTok input, $15 output, read $0.30, 5m write $3.75, 1h write $6.
    expected = (1200 * 3 + 300 * 15 + 5000 * Decimal("0.30") + 40 * Decimal("3.75") + 60 * 6) / Decimal(1_000_000)
    assert abs(stored.cost_usd - expected) < Decimal("1e-9")
    assert stored.price_source.startswith("genai-prices")
    assert DirtyHour.objects.filter(project_id=key.project_id, hour_start=ts.replace(minute=0, second=0)).exists()


def test_defaults_apply(client, ingest_key):
    secret, _ = ingest_key
    before = datetime.now(tz=UTC)
    resp = post_events(client, secret, {"request_id": "r_min", "model": "claude-haiku-4-5", "latency_ms": 10})
    assert resp.status_code == 202
    e = Event.objects.get(request_id="r_min")
    assert before <= e.timestamp <= datetime.now(tz=UTC)
    assert (e.status, e.service, e.provider, e.batch, e.feature, e.user_id) == (
        "ok",
        "default",
        "anthropic",
        False,
        "",
        "",
    )
    assert (e.input_tokens, e.output_tokens, e.cache_read_input_tokens, e.cache_creation_input_tokens) == (0, 0, 0, 0)
    assert e.http_status is None
    assert e.client_cost_usd is None
    assert e.metadata is None


def test_cache_writes_without_split_count_as_5m(client, ingest_key):
    secret, _ = ingest_key
    post_events(client, secret, ev("r_nosplit", cache_creation_input_tokens=900))
    e = Event.objects.get(request_id="r_nosplit")
    assert (e.cache_creation_input_tokens, e.cache_write_5m_tokens, e.cache_write_1h_tokens) == (900, 900, 0)


def test_cache_split_without_total_sets_the_total(client, ingest_key):
    secret, _ = ingest_key
    post_events(
        client, secret, ev("r_split", cache_creation={"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 5})
    )
    e = Event.objects.get(request_id="r_split")
    assert (e.cache_creation_input_tokens, e.cache_write_5m_tokens, e.cache_write_1h_tokens) == (12, 7, 5)


def test_unpriced_model_is_stored_with_null_cost(client, ingest_key):
    secret, _ = ingest_key
    resp = post_events(client, secret, ev("r_unpriced", model="claude-experimental-x"))
    assert resp.status_code == 202
    e = Event.objects.get(request_id="r_unpriced")
    assert e.cost_usd is None
    assert e.price_source == "unpriced"


BAD_FIELDS = [
    ({"request_id": None}, "request_id", "is required"),
    ({"request_id": ""}, "request_id", "must be 1..128 characters"),
    ({"request_id": "x" * 129}, "request_id", "at most 128"),
    ({"request_id": 12}, "request_id", "must be a string"),
    ({"model": None}, "model", "is required"),
    ({"model": "m" * 129}, "model", "at most 128"),
    ({"latency_ms": None}, "latency_ms", "is required"),
    ({"latency_ms": -1}, "latency_ms", "between 0 and 3,600,000"),
    ({"latency_ms": 3_600_001}, "latency_ms", "between 0 and 3,600,000"),
    ({"latency_ms": "12"}, "latency_ms", "must be a number"),
    ({"latency_ms": True}, "latency_ms", "must be a number"),
    ({"timestamp": "yesterday"}, "timestamp", "not a valid RFC 3339"),
    ({"timestamp": "2026-11-24T10:00:00"}, "timestamp", "UTC offset"),
    ({"timestamp": "2026-11-24"}, "timestamp", "UTC offset"),
    ({"timestamp": 1764000000}, "timestamp", "RFC 3339 string"),
    ({"timestamp": "FUTURE_6_MIN"}, "timestamp", "5 minutes in the future"),
    ({"timestamp": "PAST_30_DAYS_1_MIN"}, "timestamp", "30 days in the past"),
    ({"input_tokens": -1}, "input_tokens", "between 0 and 10,000,000"),
    ({"input_tokens": 10_000_001}, "input_tokens", "between 0 and 10,000,000"),
    ({"input_tokens": 1.5}, "input_tokens", "must be an integer"),
    ({"output_tokens": "5"}, "output_tokens", "must be an integer"),
    ({"output_tokens": False}, "output_tokens", "must be an integer"),
    ({"cache_read_input_tokens": -3}, "cache_read_input_tokens", "between 0"),
    ({"cache_creation_input_tokens": 2.0}, "cache_creation_input_tokens", "must be an integer"),
    ({"cache_creation": []}, "cache_creation", "must be an object"),
    ({"cache_creation": {"ephemeral_5m_input_tokens": -1}}, "cache_creation.ephemeral_5m_input_tokens", "between 0"),
    (
        {"cache_creation": {"ephemeral_2h_input_tokens": 1}},
        "cache_creation.ephemeral_2h_input_tokens",
        "not a known field",
    ),
    (
        {
            "cache_creation_input_tokens": 10,
            "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 5},
        },
        "cache_creation",
        "must equal cache_creation_input_tokens",
    ),
    ({"status": "failed"}, "status", 'must be "ok" or "error"'),
    ({"error_type": 5}, "error_type", "must be a string"),
    ({"error_type": "e" * 65}, "error_type", "at most 64"),
    ({"http_status": 99}, "http_status", "between 100 and 599"),
    ({"http_status": "500"}, "http_status", "between 100 and 599"),
    ({"stop_reason": ["end_turn"]}, "stop_reason", "must be a string"),
    ({"service": 1}, "service", "must be a string"),
    ({"service": "s" * 129}, "service", "at most 128"),
    ({"feature": "f" * 129}, "feature", "at most 128"),
    ({"user_id": "u" * 257}, "user_id", "at most 256"),
    ({"user_id": "a\x00b"}, "user_id", "NUL"),
    ({"provider": 3}, "provider", "must be a string"),
    ({"batch": "yes"}, "batch", "true or false"),
    ({"service_tier": 1}, "service_tier", "must be a string"),
    ({"time_to_first_token_ms": -5}, "time_to_first_token_ms", "between 0"),
    ({"cost_usd": "0.1"}, "cost_usd", "must be a number"),
    ({"cost_usd": -0.1}, "cost_usd", "between 0"),
    ({"metadata": "x"}, "metadata", "must be an object"),
    ({"metadata": {f"k{i}": "v" for i in range(21)}}, "metadata", "at most 20 keys"),
    ({"metadata": {"k": 1}}, "metadata.k", "must be a string"),
    ({"metadata": {"k": "v" * 201}}, "metadata.k", "at most 200"),
    ({"ratelimit_requests_remaining": -1}, "ratelimit_requests_remaining", "between 0"),
    ({"ratelimit_tokens_limit": 1.5}, "ratelimit_tokens_limit", "must be an integer"),
    ({"ratelimit_output_tokens_limit": "80000"}, "ratelimit_output_tokens_limit", "must be an integer"),
    ({"ratelimit_input_tokens_remaining": True}, "ratelimit_input_tokens_remaining", "must be an integer"),
    ({"ratelimit_requests_limit": 2**63}, "ratelimit_requests_limit", "between 0"),
    ({"prompt": "tell me a secret"}, "prompt", "not a known field"),
    ({"response_text": "..."}, "response_text", "not a known field"),
]


@pytest.mark.parametrize(("fields", "field", "message"), BAD_FIELDS)
def test_each_bad_field_is_rejected_by_name(client, ingest_key, fields, field, message):
    secret, _ = ingest_key
    event = ev("r_bad")
    relative = {"FUTURE_6_MIN": timedelta(minutes=6), "PAST_30_DAYS_1_MIN": -timedelta(days=30, minutes=1)}
    for name, value in fields.items():
        if value is None:
            event.pop(name, None)
        elif isinstance(value, str) and value in relative:  # computed now, not at collection time
            event[name] = (datetime.now(tz=UTC) + relative[value]).isoformat()
        else:
            event[name] = value
    resp = post_events(client, secret, event)
    assert resp.status_code == 400
    body = resp.json()
    assert body["accepted"] == 0
    assert body["duplicates"] == 0
    [rejection] = body["rejected"]
    assert rejection["index"] == 0
    matching = [e for e in rejection["errors"] if e["field"] == field]
    assert matching, rejection
    assert message in matching[0]["message"]
    assert not Event.objects.filter(request_id="r_bad").exists()


def test_every_error_of_an_event_is_listed(client, ingest_key):
    secret, _ = ingest_key
    resp = post_events(client, secret, {"model": 3, "latency_ms": -1, "prompt": "x"})
    fields = {e["field"] for e in resp.json()["rejected"][0]["errors"]}
    assert fields == {"request_id", "model", "latency_ms", "prompt"}


def test_partial_batch_keeps_the_good_events(client, ingest_key):
    secret, _ = ingest_key
    events = [ev("b0"), ev("b1", latency_ms="slow"), ev("b2"), "not an object", ev("b4", status="weird")]
    resp = post_events(client, secret, {"events": events})
    assert resp.status_code == 202
    body = resp.json()
    assert body["accepted"] == 2
    assert body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == [1, 3, 4]
    assert body["rejected"][1]["errors"] == [{"field": "event", "message": "must be a JSON object"}]
    assert set(Event.objects.values_list("request_id", flat=True)) == {"b0", "b2"}


def test_batch_of_1000_is_accepted_and_1001_refused(client, ingest_key):
    secret, _ = ingest_key
    resp = post_events(client, secret, {"events": [ev(f"k{i}") for i in range(1000)]})
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 1000
    resp = post_events(client, secret, {"events": [ev(f"m{i}") for i in range(1001)]})
    assert resp.status_code == 400
    assert "1..1000" in resp.json()["error"]
    assert Event.objects.count() == 1000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"events": {}}', '"events" must be an array'),
        (b'{"events": []}', "1..1000"),
        (b'{"events": [], "extra": 1}', "unexpected: extra"),
        (b'"just a string"', "must be a JSON object"),
    ],
)
def test_wrong_body_shape_is_400_with_error(client, ingest_key, body, message):
    secret, _ = ingest_key
    resp = post_events(client, secret, body)
    assert resp.status_code == 400
    assert message in resp.json()["error"]


def test_gzip_body_is_accepted(client, ingest_key):
    secret, _ = ingest_key
    resp = post_events(client, secret, {"events": [ev("g1"), ev("g2")]}, gzip_body=True)
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 2


def test_corrupt_gzip_is_400(client, ingest_key):
    secret, _ = ingest_key
    resp = post_events(client, secret, b"\x1f\x8bnot really gzip", HTTP_CONTENT_ENCODING="gzip")
    assert resp.status_code == 400
    assert "gzip" in resp.json()["error"]


def test_duplicates_are_counted_and_change_nothing(client, ingest_key):
    secret, _ = ingest_key
    first = post_events(client, secret, {"events": [ev("d1"), ev("d2")]})
    assert first.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    again = post_events(client, secret, {"events": [ev("d1", latency_ms=1), ev("d2"), ev("d3")]})
    assert again.status_code == 202
    assert again.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    assert Event.objects.get(request_id="d1").latency_ms == 812.5
    # A duplicate inside one batch counts once as accepted, once as duplicate.
    within = post_events(client, secret, {"events": [ev("d4"), ev("d4")]})
    assert within.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert Event.objects.count() == 4


def test_duplicate_with_another_timestamp_is_still_a_duplicate(client, ingest_key):
    secret, _ = ingest_key
    post_events(client, secret, ev("t1", timestamp=(NOW - timedelta(days=3)).isoformat()))
    resp = post_events(client, secret, ev("t1"))  # re-sent without timestamp: "now"
    assert resp.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert Event.objects.filter(request_id="t1").count() == 1


def test_same_request_id_in_another_project_is_not_a_duplicate(client, ingest_key):
    secret, _ = ingest_key
    other = ingest_key_create(project_slug="globex", environment_name="prod").secret
    assert post_events(client, secret, ev("shared")).json()["accepted"] == 1
    assert post_events(client, other, ev("shared")).json()["accepted"] == 1
    assert Event.objects.filter(request_id="shared").count() == 2


def test_missing_or_unknown_key_is_401(client, ingest_key):
    assert post_events(client, None, ev()).status_code == 401
    assert post_events(client, "tly_nope", ev()).status_code == 401
    resp = client.post(
        "/api/v1/events", data=json.dumps(ev()), content_type="application/json", HTTP_AUTHORIZATION="Basic abc"
    )
    assert resp.status_code == 401
    assert "ingest key" in resp.json()["error"]
    assert Event.objects.count() == 0


def test_revoked_key_is_401_at_once(client, ingest_key):
    secret, key = ingest_key
    assert post_events(client, secret, ev("before")).status_code == 202
    ingest_key_revoke(key=key)
    assert post_events(client, secret, ev("after")).status_code == 401
    assert list(Event.objects.values_list("request_id", flat=True)) == ["before"]


def test_read_key_cannot_ingest(client, db):
    secret = ingest_key_create(project_slug="acme", environment_name="prod", scope=IngestKey.Scope.READ).secret
    assert post_events(client, secret, ev()).status_code == 401


def test_key_fixes_project_and_environment(client, db):
    prod = ingest_key_create(project_slug="acme", environment_name="prod").key
    dev_secret = ingest_key_create(project_slug="acme", environment_name="dev").secret
    other_secret = ingest_key_create(project_slug="globex", environment_name="prod").secret
    post_events(client, dev_secret, ev("from-dev"))
    post_events(client, other_secret, ev("from-globex"))
    dev_event = Event.objects.get(request_id="from-dev")
    assert dev_event.project_id == prod.project_id
    assert dev_event.environment_id != prod.environment_id
    assert Event.objects.get(request_id="from-globex").project_id != prod.project_id


def test_not_json_is_415(client, ingest_key):
    secret, _ = ingest_key
    resp = post_events(client, secret, b"request_id=1", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 415
    assert "application/json" in resp.json()["error"]


def test_json_with_charset_is_fine(client, ingest_key):
    secret, _ = ingest_key
    resp = post_events(client, secret, ev("cs"), content_type="application/json; charset=utf-8")
    assert resp.status_code == 202


def test_body_over_5_mib_is_413(client, ingest_key):
    secret, _ = ingest_key
    big = {"events": [ev("big", metadata={"pad": "x" * 200})] * 1000}
    data = json.dumps(big).encode() + b" " * (5 * 1024 * 1024)
    resp = post_events(client, secret, data)
    assert resp.status_code == 413


def test_gzip_bomb_over_5_mib_uncompressed_is_413(client, ingest_key):
    secret, _ = ingest_key
    data = json.dumps(ev("bomb")).encode() + b" " * (6 * 1024 * 1024)
    resp = post_events(client, secret, data, gzip_body=True)
    assert resp.status_code == 413
    assert Event.objects.count() == 0


def test_get_is_405(client, ingest_key):
    assert client.get("/api/v1/events").status_code == 405


def test_rate_limit_gives_429_with_retry_after(client, ingest_key, settings):
    settings.TALLY_INGEST_RATE_PER_SEC = 0.5
    settings.TALLY_INGEST_BURST = 2
    secret, _ = ingest_key
    assert post_events(client, secret, ev("rl1")).status_code == 202
    assert post_events(client, secret, ev("rl2")).status_code == 202
    resp = post_events(client, secret, ev("rl3"))
    assert resp.status_code == 429
    assert int(resp["Retry-After"]) >= 1
    assert "rate limit" in resp.json()["error"]
    # Another key has its own bucket.
    other = ingest_key_create(project_slug="acme", environment_name="prod").secret
    assert post_events(client, other, ev("rl4")).status_code == 202


def test_rate_limiter_fails_open_when_redis_is_unreachable(client, ingest_key, settings):
    settings.TALLY_REDIS_URL = "redis://127.0.0.1:1/0"
    settings.TALLY_INGEST_BURST = 1
    secret, _ = ingest_key
    for i in range(3):
        assert post_events(client, secret, ev(f"open{i}")).status_code == 202


def test_large_batches_are_stored_like_single_events(client, ingest_key):
    secret, _ = ingest_key
    events = [
        ev(
            f"big{i}",
            metadata={"i": str(i)},
            cache_creation={"ephemeral_5m_input_tokens": 1, "ephemeral_1h_input_tokens": 2},
        )
        for i in range(100)
    ]
    events[5] = ev("big5", latency_ms="oops")
    first = post_events(client, secret, {"events": events})
    assert first.json()["accepted"] == 99
    assert first.json()["rejected"][0]["index"] == 5
    again = post_events(client, secret, {"events": events[:80] + [ev("small-new")]})
    assert again.json() == {"accepted": 1, "duplicates": 79, "rejected": again.json()["rejected"]}
    stored = Event.objects.get(request_id="big42")
    assert stored.metadata == {"i": "42"}
    assert (stored.cache_write_5m_tokens, stored.cache_write_1h_tokens) == (1, 2)
    assert stored.cost_usd is not None
    assert stored.price_source.startswith("genai-prices")
    # The same event posted alone (the single-event write) is stored identically.
    post_events(
        client,
        secret,
        ev(
            "small-twin",
            metadata={"i": "42"},
            cache_creation={"ephemeral_5m_input_tokens": 1, "ephemeral_1h_input_tokens": 2},
        ),
    )
    twin = Event.objects.get(request_id="small-twin")
    fields = [
        "model",
        "cost_usd",
        "cache_savings_usd",
        "metadata",
        "input_tokens",
        "cache_creation_input_tokens",
        "latency_ms",
        "price_source",
        "status",
        "service",
    ]
    assert [getattr(stored, f) for f in fields] == [getattr(twin, f) for f in fields]


def test_a_large_batch_over_two_days_goes_into_each_days_partition(client, ingest_key):
    # A batch's events are COPYed straight into each day's partition.
    from django.db import connection

    secret, key = ingest_key
    today = NOW.replace(hour=0, minute=30, second=0, microsecond=0)
    days = [today - timedelta(days=1), today]
    events = [ev(f"two-days-{i}", timestamp=(days[i % 2] + timedelta(minutes=i)).isoformat()) for i in range(90)]
    resp = post_events(client, secret, {"events": events})
    assert resp.json() == {"accepted": 90, "duplicates": 0, "rejected": []}
    with connection.cursor() as cursor:
        for day in days:
            cursor.execute(f'SELECT count(*) FROM "ingest_event_{day:%Y%m%d}" WHERE project_id = %s', [key.project_id])
            assert cursor.fetchone()[0] == 45
    hours = set(DirtyHour.objects.filter(project_id=key.project_id).values_list("hour_start", flat=True))
    assert {h.date() for h in hours} == {d.date() for d in days}


def test_a_partition_dropped_behind_the_process_back_is_made_again(client, ingest_key):
    # This process remembers which day partitions exist; if one is dropped by other means, the
    # COPY straight into it fails, the transaction rolls back, and the batch is written again
    # once the partition is made again: nothing is lost and nothing is half-written.
    from django.db import connection

    from ingest.partitions import existing_partition_days, partitions_ensure

    secret, key = ingest_key
    day = (NOW - timedelta(days=3)).replace(hour=6, minute=0, second=0, microsecond=0)
    partitions_ensure({day.date()})
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE "ingest_event_{day:%Y%m%d}"')
    events = [ev(f"regrown-{i}", timestamp=(day + timedelta(seconds=i)).isoformat()) for i in range(80)]
    resp = post_events(client, secret, {"events": events})
    assert resp.status_code == 202
    assert resp.json() == {"accepted": 80, "duplicates": 0, "rejected": []}
    assert day.date() in existing_partition_days()
    assert Event.objects.filter(project_id=key.project_id, request_id__startswith="regrown-").count() == 80


def test_events_older_than_the_projects_retention_are_refused(client, ingest_key):
    from core.caches import process_caches_clear
    from projects.models import Project

    secret, key = ingest_key
    Project.objects.filter(pk=key.project_id).update(raw_retention_days=7)
    process_caches_clear()
    resp = post_events(
        client,
        secret,
        {
            "events": [
                ev("r6", timestamp=(NOW - timedelta(days=6)).isoformat()),
                ev("r8", timestamp=(NOW - timedelta(days=8)).isoformat()),
            ]
        },
    )
    body = resp.json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {
            "index": 1,
            "errors": [{"field": "timestamp", "message": "is older than this project's raw-event retention (7 days)"}],
        }
    ]


def test_request_ids_with_tabs_newlines_and_backslashes_survive_the_batch_copy(client, ingest_key):
    from ingest.models import EventKey

    secret, key = ingest_key
    odd = ["a\tb", "c\nd", "e\\f", "g\rh", "\\N", "\\", "ünï cödé", "x\x01y", "nbsp\xa0id"]
    ids = odd + [f"plain{i}" for i in range(70)]
    first = post_events(client, secret, {"events": [ev(i) for i in ids]})
    assert first.json() == {"accepted": len(ids), "duplicates": 0, "rejected": []}
    assert set(EventKey.objects.filter(project_id=key.project_id).values_list("request_id", flat=True)) == set(ids)
    assert set(Event.objects.values_list("request_id", flat=True)) == set(ids)
    again = post_events(client, secret, {"events": [ev(i) for i in ids]})
    assert again.json() == {"accepted": 0, "duplicates": len(ids), "rejected": []}


@pytest.mark.parametrize("size", [1, 70])
def test_a_lone_surrogate_rejects_its_event_by_field_and_keeps_the_others(client, ingest_key, size):
    # The json module accepts "\ud800" (a lone surrogate, not valid Unicode): PostgreSQL can't store it.
    secret, _ = ingest_key
    events = [ev(f"s{i}") for i in range(size - 1)] + [
        ev("lone", user_id="\ud800"),
        ev("lone-meta", metadata={"k": "a\udfffb"}),
    ]
    resp = post_events(client, secret, {"events": events})
    assert resp.status_code == (202 if size > 1 else 400)
    body = resp.json()
    assert body["accepted"] == size - 1
    assert [r["errors"][0]["field"] for r in body["rejected"]] == ["user_id", "metadata.k"]
    assert "Unicode" in body["rejected"][0]["errors"][0]["message"]
    assert Event.objects.filter(request_id__startswith="s").count() == size - 1


RATELIMIT = {
    "ratelimit_requests_limit": 4000,
    "ratelimit_requests_remaining": 3999,
    "ratelimit_tokens_limit": 480_000,
    "ratelimit_tokens_remaining": 0,
    "ratelimit_input_tokens_limit": 400_000,
    "ratelimit_input_tokens_remaining": 398_800,
    "ratelimit_output_tokens_limit": 80_000,
    "ratelimit_output_tokens_remaining": 79_700,
}


def _ratelimit_of(request_id: str) -> dict[str, int | None]:
    return dict(Event.objects.filter(request_id=request_id).values(*RATELIMIT).get())


def test_ratelimit_headers_are_stored_by_the_single_and_the_batch_write(client, ingest_key):
    secret, _ = ingest_key
    assert post_events(client, secret, ev("rl-one", **RATELIMIT)).json()["accepted"] == 1
    partial = {"ratelimit_requests_limit": 50, "ratelimit_requests_remaining": 12}
    batch = [ev("rl-b1", **RATELIMIT), ev("rl-b2", **partial), ev("rl-b3")]
    assert post_events(client, secret, {"events": batch}).json()["accepted"] == 3
    assert _ratelimit_of("rl-one") == RATELIMIT
    assert _ratelimit_of("rl-b1") == RATELIMIT
    assert _ratelimit_of("rl-b2") == {name: partial.get(name) for name in RATELIMIT}
    assert _ratelimit_of("rl-b3") == dict.fromkeys(RATELIMIT)
