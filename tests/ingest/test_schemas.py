"""ingest.schemas: the fast passes (per parsed event, and msgspec over a raw batch body) accept only
what the field-by-field pass accepts, with identical results."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.schemas import (
    ALLOWED_FIELDS,
    MAX_FUTURE,
    MAX_PAST,
    _event_checked,
    _event_decoder,
    _event_fast,
    _event_from_struct,
    batch_events_decode,
    event_validate,
)

NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)

# Values around every rule's edges, for every field: wrong types, bounds, null, empty, NUL.
EDGY = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 99, 100, 599, 600, 3_600_000, 3_600_001, 10_000_000, 10_000_001, 10**30, 10**400]),
    st.sampled_from([0.0, 1.5, -0.5, 812.5, float("nan"), float("inf"), float("-inf"), 1e300, 3_600_000.0]),
    st.sampled_from(["", "ok", "error", "failed", "x" * 32, "x" * 33, "x" * 64, "x" * 65, "x" * 128, "x" * 129,
                     "x" * 200, "x" * 201, "x" * 256, "x" * 257, "a\x00b", "default", "anthropic", "\ud800", "é\udfff",
                     "ünïcödé",
                     "claude-sonnet-4-6"]),
    st.sampled_from(["2026-11-24T18:00:00Z", "2026-11-24t18:00:00+00:00", "2026-11-24 18:00:00+00:00",
                     "2026-11-24T18:00:00", "2026-11-24", "yesterday", "2026-11-24T19:04:59Z",
                     "2026-11-24T19:05:01Z", "2026-10-25T19:01:00Z", "2026-10-25T18:59:00Z",
                     "2026-11-20T10:00:00+05:30", "2026-11-24\u00de18:00:00Z"]),
    st.text(max_size=8),
    st.lists(st.integers(0, 5), max_size=2),
    st.dictionaries(st.sampled_from(["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens", "other", "",
                                     "k" * 65, "region"]),
                    st.one_of(st.none(), st.booleans(), st.integers(-2, 12), st.sampled_from(["eu", "x" * 201])),
                    max_size=4),
)
GOOD = {
    "request_id": "req_1", "model": "claude-sonnet-4-6", "latency_ms": 812.5, "input_tokens": 1200,
    "output_tokens": 300, "cache_read_input_tokens": 5000, "cache_creation_input_tokens": 10,
    "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
    "timestamp": "2026-11-24T18:00:00Z", "status": "error", "http_status": 529, "error_type": "overloaded_error",
    "stop_reason": "end_turn", "service": "checkout", "feature": "cart", "user_id": "u_1", "provider": "anthropic",
    "batch": True, "service_tier": "standard", "time_to_first_token_ms": 120, "cost_usd": 0.01,
    "metadata": {"region": "eu"},
}


@st.composite
def events(draw):  # type: ignore[no-untyped-def]
    """A good event with a few fields replaced, dropped or added."""
    event = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(sorted(ALLOWED_FIELDS)), max_size=4)):
        if draw(st.booleans()):
            event[name] = draw(EDGY)
        else:
            event.pop(name, None)
    if draw(st.integers(0, 9)) == 0:
        event[draw(st.sampled_from(["prompt", "response", "x"]))] = "secret"
    return event


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(event=events(), retention_days=st.sampled_from([7, 30, 90]))
def test_fast_pass_never_accepts_what_the_checked_pass_refuses_and_agrees_when_it_accepts(event, retention_days):
    max_past = min(MAX_PAST, timedelta(days=retention_days))
    checked, errors = _event_checked(event, now=NOW, max_past=max_past)
    fast = _event_fast(event, NOW, max_past)
    if fast is not None:
        assert errors == [], (event, errors)
        assert fast == checked
        assert [type(v) for v in fast] == [type(v) for v in checked]  # type: ignore[union-attr]
    assert event_validate(event, now=NOW, max_past=max_past) == (checked, errors)


def test_the_usual_events_take_the_fast_pass():
    minimal = {"request_id": "r", "model": "claude-haiku-4-5", "latency_ms": 5}
    for event in (GOOD, minimal, {**minimal, "metadata": {}, "cache_creation_input_tokens": 7}):
        assert _event_fast(event, NOW, MAX_PAST) is not None, event


def test_a_number_too_big_for_a_float_is_a_field_error_not_a_crash():
    event = {"request_id": "r", "model": "m", "latency_ms": 10**400, "cost_usd": 10**400}
    assert [e.as_dict() for e in _event_checked(event, now=NOW, max_past=MAX_PAST)[1]] == [
        {"field": "latency_ms", "message": "must be between 0 and 3,600,000"},
        {"field": "cost_usd", "message": "must be between 0 and 1,000,000"}]


def _one_pass(event, max_past):  # type: ignore[no-untyped-def]
    try:
        struct = _event_decoder.decode(json.dumps(event).encode())
    except (msgspec.DecodeError, ValueError):
        return None
    return _event_from_struct(struct, NOW, NOW - min(MAX_PAST, max_past), NOW + MAX_FUTURE)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(event=events(), retention_days=st.sampled_from([7, 30, 90]))
def test_msgspec_pass_never_accepts_what_the_checked_pass_refuses_and_agrees_when_it_accepts(event, retention_days):
    max_past = min(MAX_PAST, timedelta(days=retention_days))
    checked, errors = _event_checked(event, now=NOW, max_past=max_past)
    decoded = _one_pass(event, max_past)
    if decoded is not None:
        assert errors == [], (event, errors)
        assert decoded == checked
        assert [type(v) for v in decoded] == [type(v) for v in checked]  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(events(), min_size=1, max_size=5))
def test_a_batch_decodes_in_one_pass_only_when_every_event_is_valid(batch):
    data = json.dumps({"events": batch}).encode()
    valid = batch_events_decode(data, now=NOW, max_past=MAX_PAST, max_batch=1000)
    results = [_event_checked(e, now=NOW, max_past=MAX_PAST) for e in batch]
    if valid is not None:
        assert all(errors == [] for _, errors in results)
        assert valid == [event for event, _ in results]


def test_usual_batches_decode_in_one_pass_and_others_do_not():
    minimal = {"request_id": "r", "model": "claude-haiku-4-5", "latency_ms": 5}
    body = {"events": [GOOD, minimal, {**minimal, "metadata": {}, "cache_creation_input_tokens": 7}]}
    assert batch_events_decode(json.dumps(body).encode(), now=NOW, max_past=MAX_PAST, max_batch=1000) is not None
    for other in ({"events": []}, {"events": [minimal] * 3}, minimal, {"events": [minimal], "x": 1},
                  {"events": [{**minimal, "latency_ms": True}]}, {"events": [{**minimal, "user_id": "a\x00"}]}):
        assert batch_events_decode(json.dumps(other).encode(), now=NOW, max_past=MAX_PAST, max_batch=2) is None
    assert batch_events_decode(b"{nope", now=NOW, max_past=MAX_PAST, max_batch=2) is None
