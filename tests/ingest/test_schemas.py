"""ingest.schemas: the one `Event` declaration decodes, checks, words errors and describes itself
for OpenAPI; a body decoded straight from JSON and the same body parsed first are judged alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.schemas import (
    MAX_PAST,
    BodyError,
    Event,
    ValidEvent,
    Window,
    body_validate,
    event_validate,
    openapi_components,
)

NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
WINDOW = Window.at(NOW)
FIELDS = sorted(Event.__struct_fields__)

# Values around every rule's edges, for every field: wrong types, bounds, null, empty, NUL.
EDGY = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 99, 100, 599, 600, 3_600_000, 3_600_001, 10_000_000, 10_000_001, 10**30, 10**400]),
    st.sampled_from([0.0, 1.5, -0.5, 812.5, float("nan"), float("inf"), float("-inf"), 1e300, 3_600_000.0]),
    st.sampled_from(
        [
            "",
            "ok",
            "error",
            "failed",
            "x" * 32,
            "x" * 33,
            "x" * 64,
            "x" * 65,
            "x" * 128,
            "x" * 129,
            "x" * 200,
            "x" * 201,
            "x" * 256,
            "x" * 257,
            "a\x00b",
            "default",
            "anthropic",
            "\ud800",
            "é\udfff",
            "ünïcödé",
            "claude-sonnet-4-6",
        ]
    ),
    st.sampled_from(
        [
            "2026-11-24T18:00:00Z",
            "2026-11-24t18:00:00+00:00",
            "2026-11-24 18:00:00+00:00",
            "2026-11-24T18:00:00",
            "2026-11-24",
            "yesterday",
            "2026-11-24T19:04:59Z",
            "2026-11-24T19:05:01Z",
            "2026-10-25T19:01:00Z",
            "2026-10-25T18:59:00Z",
            "2026-11-20T10:00:00+05:30",
            "2026-11-24\u00de18:00:00Z",
        ]
    ),
    st.text(max_size=8),
    st.lists(st.integers(0, 5), max_size=2),
    st.dictionaries(
        st.sampled_from(["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens", "other", "", "k" * 65, "region"]),
        st.one_of(st.none(), st.booleans(), st.integers(-2, 12), st.sampled_from(["eu", "x" * 201])),
        max_size=4,
    ),
)
GOOD = {
    "request_id": "req_1",
    "model": "claude-sonnet-4-6",
    "latency_ms": 812.5,
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_input_tokens": 5000,
    "cache_creation_input_tokens": 10,
    "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
    "timestamp": "2026-11-24T18:00:00Z",
    "status": "error",
    "http_status": 529,
    "error_type": "overloaded_error",
    "stop_reason": "end_turn",
    "service": "checkout",
    "feature": "cart",
    "user_id": "u_1",
    "provider": "anthropic",
    "batch": True,
    "service_tier": "standard",
    "time_to_first_token_ms": 120,
    "cost_usd": 0.01,
    "metadata": {"region": "eu"},
    "ratelimit_requests_limit": 50,
    "ratelimit_requests_remaining": 0,
}


@st.composite
def events(draw):  # type: ignore[no-untyped-def]
    """A good event with a few fields replaced, dropped or added."""
    event = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        if draw(st.booleans()):
            event[name] = draw(EDGY)
        else:
            event.pop(name, None)
    if draw(st.integers(0, 9)) == 0:
        event[draw(st.sampled_from(["prompt", "response", "x"]))] = "secret"
    return event


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(event=events(), retention_days=st.sampled_from([7, 30, 90]))
def test_an_event_is_either_accepted_or_refused_with_errors_that_name_its_fields(event, retention_days):
    valid, errors = event_validate(event, window=Window.at(NOW, timedelta(days=retention_days)))
    assert (valid is None) == bool(errors)
    if valid is not None:
        assert isinstance(valid, ValidEvent)
        assert valid.request_id == event["request_id"]
    for error in errors:
        assert error.message
        assert error.field.split(".")[0] in event or error.field in ("request_id", "model", "latency_ms")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(events(), min_size=1, max_size=5), single=st.booleans())
def test_a_body_decoded_from_json_is_judged_like_the_same_body_parsed(batch, single):
    body = batch[0] if single else {"events": batch}
    data = json.dumps(body).encode()  # NaN, infinities and lone surrogates as the json module writes them
    assert body_validate(data, window=WINDOW, max_batch=1000) == body_validate(
        json.loads(data), window=WINDOW, max_batch=1000
    )


def test_defaults_apply_and_the_cache_split_is_worked_out():
    minimal = {"request_id": "r", "model": "claude-haiku-4-5", "latency_ms": 5}
    valid, errors = event_validate({**minimal, "cache_creation_input_tokens": 7, "input_tokens": None}, window=WINDOW)
    assert errors == []
    assert valid == ValidEvent(
        "r",
        "claude-haiku-4-5",
        NOW,
        5.0,
        0,
        0,
        0,
        7,
        7,
        0,
        "ok",
        "",
        None,
        "",
        "default",
        "",
        "",
        "anthropic",
        False,
        "",
        None,
        None,
        None,
    )
    assert type(valid.latency_ms) is float  # type: ignore[union-attr]
    valid, _ = event_validate({**minimal, "cache_creation": {"ephemeral_1h_input_tokens": 3}}, window=WINDOW)
    assert valid is not None
    assert (valid.cache_creation_input_tokens, valid.cache_write_5m_tokens, valid.cache_write_1h_tokens) == (3, 0, 3)


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {"latency_ms": 10**400, "cost_usd": 10**400},
            [("latency_ms", "must be between 0 and 3,600,000"), ("cost_usd", "must be between 0 and 1,000,000")],
        ),
        ({"latency_ms": float("nan")}, [("latency_ms", "must be between 0 and 3,600,000")]),
        (
            {"request_id": "", "model": None, "input_tokens": True},
            [
                ("request_id", "must be 1..128 characters"),
                ("model", "is required"),
                ("input_tokens", "must be an integer"),
            ],
        ),
        (
            {"http_status": "500", "status": 1, "batch": 0},
            [
                ("status", 'must be "ok" or "error"'),
                ("http_status", "must be an integer between 100 and 599"),
                ("batch", "must be true or false"),
            ],
        ),
        ({"timestamp": 5}, [("timestamp", "must be an RFC 3339 string with offset")]),
        ({"timestamp": "2026-10-25T18:59:00Z"}, [("timestamp", "is more than 30 days in the past")]),
        (
            {"cache_creation": {"ephemeral_2h_input_tokens": 1, "ephemeral_5m_input_tokens": -1}},
            [
                ("cache_creation.ephemeral_2h_input_tokens", "is not a known field"),
                ("cache_creation.ephemeral_5m_input_tokens", "must be between 0 and 10,000,000"),
            ],
        ),
        (
            {"cache_creation_input_tokens": 3, "cache_creation": {"ephemeral_5m_input_tokens": 1}},
            [("cache_creation", "ephemeral_5m + ephemeral_1h must equal cache_creation_input_tokens")],
        ),
        (
            {"metadata": {"": "a", "k": 1, "n": "a\x00"}},
            [
                ("metadata", "keys must be 1..64 characters"),
                ("metadata.k", "must be a string"),
                ("metadata.n", "must not contain NUL characters"),
            ],
        ),
        ({"metadata": []}, [("metadata", "must be an object of strings")]),
        (
            {"ratelimit_tokens_remaining": -1, "ratelimit_output_tokens_limit": 2.5},
            [
                ("ratelimit_tokens_remaining", "must be between 0 and 9,223,372,036,854,775,807"),
                ("ratelimit_output_tokens_limit", "must be an integer"),
            ],
        ),
        (
            {"user_id": "\ud800", "prompt": "x"},
            [
                ("prompt", "is not a known field (prompt and response text are never accepted)"),
                ("user_id", "must be valid Unicode (no lone surrogate escapes such as \\ud800)"),
            ],
        ),
    ],
)
def test_errors_are_worded_from_the_declaration(fields, errors):
    event = {"request_id": "r", "model": "m", "latency_ms": 1, **fields}
    event = {k: v for k, v in event.items() if v is not None}
    valid, found = event_validate(event, window=WINDOW)
    assert valid is None
    assert [(e.field, e.message) for e in found] == errors


def test_the_retention_window_words_its_own_error():
    event = {"request_id": "r", "model": "m", "latency_ms": 1, "timestamp": "2026-11-10T00:00:00Z"}
    _, errors = event_validate(event, window=Window.at(NOW, timedelta(days=7)))
    assert [e.as_dict() for e in errors] == [
        {"field": "timestamp", "message": "is older than this project's raw-event retention (7 days)"}
    ]
    assert event_validate(event, window=Window.at(NOW, MAX_PAST))[1] == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{nope", "malformed JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"events": []}', "1..2 events"),
        (b'{"events": [{}], "x": 1}', "unexpected: x"),
        (b'{"events": {}}', '"events" must be an array'),
    ],
)
def test_an_unusable_body_is_a_body_error(data, message):
    with pytest.raises(BodyError, match=message):
        body_validate(data, window=WINDOW, max_batch=2)


def test_the_openapi_schema_is_generated_from_the_declaration():
    components = openapi_components()
    event = components["Event"]
    assert set(event["properties"]) == set(FIELDS)
    assert event["required"] == ["request_id", "model", "latency_ms"]
    assert event["additionalProperties"] is False
    assert event["properties"]["request_id"] == {"type": "string", "minLength": 1, "maxLength": 128}
    tokens = {"type": "integer", "minimum": 0, "maximum": 10_000_000}
    assert event["properties"]["input_tokens"]["anyOf"] == [tokens, {"type": "null"}]
    assert event["properties"]["timestamp"]["anyOf"][0]["format"] == "date-time"
    assert components["CacheCreation"]["additionalProperties"] is False
