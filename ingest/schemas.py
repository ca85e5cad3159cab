"""Validation of ingest bodies (CONTRACT §3), field by field, with errors that name the field.

Hand-written rather than a pydantic model: every event of every batch passes through
here, the rules are simple and fixed, and the messages must name the contract's field
names exactly. Unknown fields reject the event (prompt and response text must never
reach storage, whatever a client sends).

Two passes of the same rules: `_event_fast` accepts a well-formed event in one function with
no error bookkeeping (the common case, a few µs), and gives up (None) at the first doubt;
`_event_checked` then re-checks that event field by field and lists every error. The fast pass
may only accept what the checked pass accepts, with the same result: tests/ingest/test_schemas.py
compares the two on generated events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

MAX_TOKENS = 10_000_000
MAX_LATENCY_MS = 3_600_000
MAX_FUTURE = timedelta(minutes=5)
MAX_PAST = timedelta(days=30)
MAX_METADATA_KEYS = 20
MAX_METADATA_VALUE = 200
MAX_METADATA_KEY = 64
MAX_CLIENT_COST_USD = 1_000_000

# Optional strings: field -> max length. Empty string means "not given".
_STRINGS = {
    "error_type": 64,
    "stop_reason": 64,
    "feature": 128,
    "user_id": 256,
    "service_tier": 32,
}
_TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
_CACHE_CREATION_KEYS = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
_CACHE_CREATION_KEY_SET = frozenset(_CACHE_CREATION_KEYS)

ALLOWED_FIELDS = frozenset(
    {
        "request_id", "model", "timestamp", "latency_ms", "cache_creation", "status", "http_status",
        "service", "provider", "batch", "time_to_first_token_ms", "cost_usd", "metadata",
        *_STRINGS, *_TOKEN_FIELDS,
    }
)


@dataclass(slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ValidEvent(NamedTuple):
    """An event that passed every rule, with defaults applied. Token fields follow Anthropic:
    `input_tokens` excludes cache tokens; cache writes are split into 5m and 1h.

    A NamedTuple rather than a dataclass: one is made per event, and a tuple is built several
    times faster than a 23-field dataclass instance."""

    request_id: str
    model: str
    timestamp: datetime
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    status: str
    error_type: str
    http_status: int | None
    stop_reason: str
    service: str
    feature: str
    user_id: str
    provider: str
    batch: bool
    service_tier: str
    time_to_first_token_ms: float | None
    client_cost_usd: float | None
    metadata: dict[str, str] | None


def _is_number(value: Any) -> bool:
    # isfinite only for floats: a JSON integer too big for a float would raise OverflowError there.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _string(raw: dict[str, Any], name: str, errors: list[FieldError], *, max_len: int, required: bool = False,
            default: str = "") -> str:
    value = raw.get(name)
    if value is None:
        if required:
            errors.append(FieldError(name, "is required"))
        return default
    if not isinstance(value, str):
        errors.append(FieldError(name, "must be a string"))
        return default
    if required and not value:
        errors.append(FieldError(name, f"must be 1..{max_len} characters"))
        return default
    if len(value) > max_len:
        errors.append(FieldError(name, f"must be at most {max_len} characters"))
        return default
    if "\x00" in value:
        errors.append(FieldError(name, "must not contain NUL characters"))
        return default
    if not _unicode_ok(value):
        errors.append(FieldError(name, UNICODE_ERROR))
        return default
    return value


UNICODE_ERROR = "must be valid Unicode (no lone surrogate escapes such as \\ud800)"


def _unicode_ok(value: str) -> bool:
    """Storable as UTF-8: Python's json module lets lone surrogates ("\\ud800") through."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _tokens(raw: dict[str, Any], name: str, errors: list[FieldError], *, parent: str = "") -> int:
    value = raw.get(name)
    label = f"{parent}.{name}" if parent else name
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        errors.append(FieldError(label, "must be an integer"))
        return 0
    if not 0 <= value <= MAX_TOKENS:
        errors.append(FieldError(label, f"must be between 0 and {MAX_TOKENS:,}"))
        return 0
    return value


def _number(raw: dict[str, Any], name: str, errors: list[FieldError], *, maximum: float,
            required: bool = False) -> float | None:
    value = raw.get(name)
    if value is None:
        if required:
            errors.append(FieldError(name, "is required"))
        return None
    if not _is_number(value):
        errors.append(FieldError(name, "must be a number"))
        return None
    if not 0 <= value <= maximum:
        errors.append(FieldError(name, f"must be between 0 and {maximum:,}"))
        return None
    return float(value)


def _timestamp(raw: dict[str, Any], errors: list[FieldError], now: datetime, max_past: timedelta) -> datetime:
    value = raw.get("timestamp")
    if value is None:
        return now
    if not isinstance(value, str):
        errors.append(FieldError("timestamp", "must be an RFC 3339 string with offset"))
        return now
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors.append(FieldError("timestamp", "is not a valid RFC 3339 date-time"))
        return now
    if parsed.tzinfo is None or "T" not in value.upper():
        errors.append(FieldError("timestamp", "must include a time and a UTC offset, e.g. 2026-11-24T19:00:00Z"))
        return now
    if parsed > now + MAX_FUTURE:
        errors.append(FieldError("timestamp", "is more than 5 minutes in the future"))
    elif parsed < now - MAX_PAST:
        errors.append(FieldError("timestamp", "is more than 30 days in the past"))
    elif parsed < now - max_past:
        # Its hour would be re-rolled from raw events that retention has already deleted.
        errors.append(FieldError("timestamp", f"is older than this project's raw-event retention "
                                              f"({max_past.days} days)"))
    return parsed


def _cache_split(raw: dict[str, Any], total: int, errors: list[FieldError]) -> tuple[int, int, int]:
    """(total, 5m, 1h) cache writes. Without a split every write counts as 5m (the API's default TTL)."""
    value = raw.get("cache_creation")
    if value is None:
        return total, total, 0
    if not isinstance(value, dict):
        errors.append(FieldError("cache_creation", "must be an object"))
        return total, total, 0
    for key in value:
        if key not in _CACHE_CREATION_KEYS:
            errors.append(FieldError(f"cache_creation.{key}", "is not a known field"))
    five = _tokens(value, "ephemeral_5m_input_tokens", errors, parent="cache_creation")
    hour = _tokens(value, "ephemeral_1h_input_tokens", errors, parent="cache_creation")
    if "cache_creation_input_tokens" not in raw or raw.get("cache_creation_input_tokens") is None:
        return five + hour, five, hour
    if five + hour != total:
        errors.append(
            FieldError("cache_creation", "ephemeral_5m + ephemeral_1h must equal cache_creation_input_tokens")
        )
    return total, five, hour


def _metadata(raw: dict[str, Any], errors: list[FieldError]) -> dict[str, str] | None:
    value = raw.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(FieldError("metadata", "must be an object of strings"))
        return None
    if len(value) > MAX_METADATA_KEYS:
        errors.append(FieldError("metadata", f"must have at most {MAX_METADATA_KEYS} keys"))
        return None
    for key, item in value.items():
        if not key or len(key) > MAX_METADATA_KEY or "\x00" in key:
            errors.append(FieldError("metadata", f"keys must be 1..{MAX_METADATA_KEY} characters"))
            return None
        if not _unicode_ok(key):
            errors.append(FieldError("metadata", f"keys {UNICODE_ERROR}"))
            return None
        if not isinstance(item, str):
            errors.append(FieldError(f"metadata.{key}", "must be a string"))
            return None
        if len(item) > MAX_METADATA_VALUE or "\x00" in item:
            errors.append(FieldError(f"metadata.{key}", f"must be at most {MAX_METADATA_VALUE} characters"))
            return None
        if not _unicode_ok(item):
            errors.append(FieldError(f"metadata.{key}", UNICODE_ERROR))
            return None
    return value


def event_validate(raw: Any, *, now: datetime, max_past: timedelta = MAX_PAST
                   ) -> tuple[ValidEvent | None, list[FieldError]]:
    """One event: (the event, []) or (None, every error found)."""
    event = _event_fast(raw, now, max_past)
    if event is not None:
        return event, []
    return _event_checked(raw, now=now, max_past=max_past)


def _short_str(value: Any, max_len: int) -> bool:
    return type(value) is str and len(value) <= max_len and "\x00" not in value


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_TOKENS


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _in_range(value: Any, maximum: float) -> bool:
    # type() excludes bool; NaN fails both comparisons, +-inf fails one: only finite numbers pass.
    return (type(value) is float or type(value) is int) and 0 <= value <= maximum


def _event_fast(raw: Any, now: datetime, max_past: timedelta) -> ValidEvent | None:
    """The event if it is plainly valid, else None (then `_event_checked` says why, or accepts it).

    JSON null means "not given" everywhere, as in `_event_checked`; `x if x is not None else d`
    (never `x or d`) so that false, 0 or "" are judged, not defaulted. `type(x) is int` excludes
    bool; NaN fails every comparison and an infinity one of the two, so range checks also
    refuse non-finite floats. Written out inline: this runs for every event of every batch.
    """
    if type(raw) is not dict or not raw.keys() <= ALLOWED_FIELDS:
        return None
    get = raw.get
    request_id = get("request_id")
    model = get("model")
    latency_ms = get("latency_ms")
    if not (type(request_id) is str and 0 < len(request_id) <= 128 and "\x00" not in request_id
            and type(model) is str and 0 < len(model) <= 128 and "\x00" not in model
            and (type(latency_ms) is float or type(latency_ms) is int) and 0 <= latency_ms <= MAX_LATENCY_MS):
        return None
    value = get("timestamp")
    if value is None:
        timestamp = now
    else:
        if type(value) is not str or ("T" not in value and "t" not in value):
            return None
        try:
            timestamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        if timestamp.tzinfo is None or timestamp > now + MAX_FUTURE or timestamp < now - min(MAX_PAST, max_past):
            return None
    input_tokens = get("input_tokens")
    if input_tokens is None:
        input_tokens = 0
    output_tokens = get("output_tokens")
    if output_tokens is None:
        output_tokens = 0
    cache_read = get("cache_read_input_tokens")
    if cache_read is None:
        cache_read = 0
    cache_total = get("cache_creation_input_tokens")
    if not (type(input_tokens) is int and 0 <= input_tokens <= MAX_TOKENS
            and type(output_tokens) is int and 0 <= output_tokens <= MAX_TOKENS
            and type(cache_read) is int and 0 <= cache_read <= MAX_TOKENS
            and (cache_total is None or (type(cache_total) is int and 0 <= cache_total <= MAX_TOKENS))):
        return None
    split = get("cache_creation")
    if split is None:
        if cache_total is None:
            cache_total = 0
        cache_5m, cache_1h = cache_total, 0
    else:
        if type(split) is not dict or not split.keys() <= _CACHE_CREATION_KEY_SET:
            return None
        cache_5m = _or(split.get("ephemeral_5m_input_tokens"), 0)
        cache_1h = _or(split.get("ephemeral_1h_input_tokens"), 0)
        if not (_count(cache_5m) and _count(cache_1h)):
            return None
        if cache_total is None:
            cache_total = cache_5m + cache_1h
        elif cache_5m + cache_1h != cache_total:
            return None
    status = get("status")
    if status is None:
        status = "ok"
    elif status != "ok" and status != "error":
        return None
    http_status = get("http_status")
    if http_status is not None and not (type(http_status) is int and 100 <= http_status <= 599):
        return None
    batch = get("batch")
    if batch is None:
        batch = False
    elif type(batch) is not bool:
        return None
    error_type = _or(get("error_type"), "")
    stop_reason = _or(get("stop_reason"), "")
    feature = _or(get("feature"), "")
    user_id = _or(get("user_id"), "")
    service_tier = _or(get("service_tier"), "")
    service = _or(get("service"), "default")
    provider = _or(get("provider"), "anthropic")
    if not (type(error_type) is str and len(error_type) <= 64 and type(stop_reason) is str and len(stop_reason) <= 64
            and type(feature) is str and len(feature) <= 128 and type(user_id) is str and len(user_id) <= 256
            and type(service_tier) is str and len(service_tier) <= 32 and type(service) is str
            and len(service) <= 128 and type(provider) is str and len(provider) <= 64
            and "\x00" not in error_type and "\x00" not in stop_reason and "\x00" not in feature
            and "\x00" not in user_id and "\x00" not in service_tier and "\x00" not in service
            and "\x00" not in provider):
        return None
    text = request_id + model + error_type + stop_reason + feature + user_id + service_tier + service + provider
    if not text.isascii() and not _unicode_ok(text):  # a lone surrogate (only the json module lets one in)
        return None
    ttft = get("time_to_first_token_ms")
    if ttft is not None:
        if not _in_range(ttft, MAX_LATENCY_MS):
            return None
        ttft = float(ttft)
    client_cost = get("cost_usd")
    if client_cost is not None:
        if not _in_range(client_cost, MAX_CLIENT_COST_USD):
            return None
        client_cost = float(client_cost)
    metadata = get("metadata")
    if metadata is not None:
        if type(metadata) is not dict or len(metadata) > MAX_METADATA_KEYS:
            return None
        for key, item in metadata.items():
            if not (key and _short_str(key, MAX_METADATA_KEY) and _short_str(item, MAX_METADATA_VALUE)
                    and _unicode_ok(key) and _unicode_ok(item)):
                return None
    return ValidEvent(request_id, model, timestamp, float(latency_ms), input_tokens, output_tokens, cache_read,
                      cache_total, cache_5m, cache_1h, status, error_type, http_status, stop_reason,
                      service or "default", feature, user_id, provider or "anthropic", batch, service_tier, ttft,
                      client_cost, metadata)


def _event_checked(raw: Any, *, now: datetime, max_past: timedelta) -> tuple[ValidEvent | None, list[FieldError]]:
    """Every rule, one field at a time, collecting every error (the messages clients see)."""
    if not isinstance(raw, dict):
        return None, [FieldError("event", "must be a JSON object")]
    errors: list[FieldError] = [
        FieldError(name, "is not a known field (prompt and response text are never accepted)")
        for name in raw
        if name not in ALLOWED_FIELDS
    ]
    request_id = _string(raw, "request_id", errors, max_len=128, required=True)
    model = _string(raw, "model", errors, max_len=128, required=True)
    timestamp = _timestamp(raw, errors, now, max_past)
    latency_ms = _number(raw, "latency_ms", errors, maximum=MAX_LATENCY_MS, required=True)
    input_tokens = _tokens(raw, "input_tokens", errors)
    output_tokens = _tokens(raw, "output_tokens", errors)
    cache_read = _tokens(raw, "cache_read_input_tokens", errors)
    cache_total, cache_5m, cache_1h = _cache_split(raw, _tokens(raw, "cache_creation_input_tokens", errors), errors)
    status = raw.get("status", "ok")
    if status is None:
        status = "ok"
    if status not in ("ok", "error"):
        errors.append(FieldError("status", 'must be "ok" or "error"'))
    http_status = raw.get("http_status")
    if http_status is not None and (
        not isinstance(http_status, int) or isinstance(http_status, bool) or not 100 <= http_status <= 599
    ):
        errors.append(FieldError("http_status", "must be an integer between 100 and 599"))
        http_status = None
    batch = raw.get("batch", False)
    if batch is None:
        batch = False
    if not isinstance(batch, bool):
        errors.append(FieldError("batch", "must be true or false"))
    strings = {name: _string(raw, name, errors, max_len=limit) for name, limit in _STRINGS.items()}
    service = _string(raw, "service", errors, max_len=128, default="default") or "default"
    provider = _string(raw, "provider", errors, max_len=64, default="anthropic") or "anthropic"
    ttft = _number(raw, "time_to_first_token_ms", errors, maximum=MAX_LATENCY_MS)
    client_cost = _number(raw, "cost_usd", errors, maximum=MAX_CLIENT_COST_USD)
    metadata = _metadata(raw, errors)
    if errors:
        return None, errors
    return (
        ValidEvent(
            request_id=request_id,
            model=model,
            timestamp=timestamp,
            latency_ms=latency_ms or 0.0,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_input_tokens=cache_read,
            cache_creation_input_tokens=cache_total,
            cache_write_5m_tokens=cache_5m,
            cache_write_1h_tokens=cache_1h,
            status=status,
            error_type=strings["error_type"],
            http_status=http_status,
            stop_reason=strings["stop_reason"],
            service=service,
            feature=strings["feature"],
            user_id=strings["user_id"],
            provider=provider,
            batch=batch,
            service_tier=strings["service_tier"],
            time_to_first_token_ms=ttft,
            client_cost_usd=client_cost,
            metadata=metadata,
        ),
        [],
    )


# --- batch bodies in one pass ------------------------------------------------------------------
# msgspec decodes a batch body straight into typed structs, checking types, ranges and lengths
# as it parses (in C); `batch_events_decode` then applies the few rules it cannot express (NUL
# characters, the timestamp, the cache split). Anything it refuses, for whatever reason, goes
# the general way (JSON parse, then `event_validate` per event), which alone words the errors:
# so this pass must accept nothing `_event_checked` refuses and give the same ValidEvent, which
# tests/ingest/test_schemas.py checks on generated events. The structs are untracked by the cyclic
# garbage collector (gc=False): they hold only strings, numbers and a dict of strings, so they
# can't be part of a cycle, and a batch allocates hundreds of them.
def _text(max_len: int, min_len: int = 0) -> Any:
    return Annotated[str, msgspec.Meta(min_length=min_len, max_length=max_len)]


_TokensIn = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
_LatencyIn = Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)]


class _CacheCreationIn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    ephemeral_5m_input_tokens: _TokensIn | None = None
    ephemeral_1h_input_tokens: _TokensIn | None = None


class _EventIn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    request_id: _text(128, 1)  # type: ignore[valid-type]
    model: _text(128, 1)  # type: ignore[valid-type]
    latency_ms: _LatencyIn
    timestamp: str | None = None
    input_tokens: _TokensIn | None = None
    output_tokens: _TokensIn | None = None
    cache_read_input_tokens: _TokensIn | None = None
    cache_creation_input_tokens: _TokensIn | None = None
    cache_creation: _CacheCreationIn | None = None
    status: Literal["ok", "error"] | None = None
    http_status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None
    batch: bool | None = None
    error_type: _text(64) | None = None  # type: ignore[valid-type]
    stop_reason: _text(64) | None = None  # type: ignore[valid-type]
    feature: _text(128) | None = None  # type: ignore[valid-type]
    user_id: _text(256) | None = None  # type: ignore[valid-type]
    service_tier: _text(32) | None = None  # type: ignore[valid-type]
    service: _text(128) | None = None  # type: ignore[valid-type]
    provider: _text(64) | None = None  # type: ignore[valid-type]
    time_to_first_token_ms: _LatencyIn | None = None
    cost_usd: Annotated[float, msgspec.Meta(ge=0, le=MAX_CLIENT_COST_USD)] | None = None
    metadata: Annotated[
        dict[_text(MAX_METADATA_KEY, 1), _text(MAX_METADATA_VALUE)],  # type: ignore[valid-type]
        msgspec.Meta(max_length=MAX_METADATA_KEYS),
    ] | None = None


class _BatchIn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    events: list[_EventIn]


_batch_decoder = msgspec.json.Decoder(_BatchIn)
_event_decoder = msgspec.json.Decoder(_EventIn)


def _event_from_struct(e: _EventIn, now: datetime, earliest: datetime, latest: datetime) -> ValidEvent | None:
    """`_event_fast` for an event msgspec has type- and range-checked (so `x or default` is safe:
    a value of the right type that is falsy is 0, "" or False, which default the same way).
    `earliest` and `latest` bound the timestamp: now - min(MAX_PAST, max_past), now + MAX_FUTURE."""
    request_id, model = e.request_id, e.model
    value = e.timestamp
    if value is None:
        timestamp = now
    else:
        if "T" not in value and "t" not in value:
            return None
        try:
            timestamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        if timestamp.tzinfo is None or timestamp > latest or timestamp < earliest:
            return None
    cache_total = e.cache_creation_input_tokens
    split = e.cache_creation
    if split is None:
        cache_total = cache_total or 0
        cache_5m, cache_1h = cache_total, 0
    else:
        cache_5m = split.ephemeral_5m_input_tokens or 0
        cache_1h = split.ephemeral_1h_input_tokens or 0
        if cache_total is None:
            cache_total = cache_5m + cache_1h
        elif cache_5m + cache_1h != cache_total:
            return None
    error_type = e.error_type or ""
    stop_reason = e.stop_reason or ""
    feature = e.feature or ""
    user_id = e.user_id or ""
    service_tier = e.service_tier or ""
    service = e.service or "default"
    provider = e.provider or "anthropic"
    if "\x00" in (request_id + model + error_type + stop_reason + feature + user_id + service_tier + service
                   + provider):
        return None
    metadata = e.metadata
    if metadata is not None:
        for key, item in metadata.items():
            if "\x00" in key or "\x00" in item:
                return None
    return ValidEvent(request_id, model, timestamp, e.latency_ms, e.input_tokens or 0, e.output_tokens or 0,
                      e.cache_read_input_tokens or 0, cache_total, cache_5m, cache_1h, e.status or "ok", error_type,
                      e.http_status, stop_reason, service, feature, user_id, provider, e.batch or False,
                      service_tier, e.time_to_first_token_ms, e.cost_usd, metadata)


def batch_events_decode(data: bytes, *, now: datetime, max_past: timedelta, max_batch: int) -> list[ValidEvent] | None:
    """Every event of a `{"events": [...]}` body whose events are all plainly valid, in one pass
    from the raw JSON; None for any other body (then parse it and use `event_validate`)."""
    try:
        events = _batch_decoder.decode(data).events
    except msgspec.DecodeError:  # ValidationError included
        return None
    if not 1 <= len(events) <= max_batch:
        return None
    valid = []
    earliest, latest = now - min(MAX_PAST, max_past), now + MAX_FUTURE
    for e in events:
        event = _event_from_struct(e, now, earliest, latest)
        if event is None:
            return None
        valid.append(event)
    return valid


class BodyError(ValueError):
    """The body as a whole is unusable (wrong shape): 400 {"error": ...}."""


def body_events(body: Any, *, max_batch: int) -> list[Any]:
    """The list of raw events in a parsed body: one event object or {"events": [...]}."""
    if not isinstance(body, dict):
        raise BodyError('body must be a JSON object: one event, or {"events": [...]}')
    if "events" not in body:
        return [body]
    events = body["events"]
    if len(body) != 1:
        extra = sorted(k for k in body if k != "events")
        raise BodyError(f'a batch body has only "events"; unexpected: {", ".join(extra)}')
    if not isinstance(events, list):
        raise BodyError('"events" must be an array')
    if not 1 <= len(events) <= max_batch:
        raise BodyError(f'"events" must hold 1..{max_batch} events (got {len(events)})')
    return events
