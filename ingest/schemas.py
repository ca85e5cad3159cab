"""The ingest event (CONTRACT §3), declared once: `Event` below.

Everything else is derived from that declaration:
- decoding and type checks: msgspec decodes a request body straight into `Event` structs (in C),
  checking types, ranges and lengths as it parses;
- field errors: when msgspec refuses an event, `_value_errors` walks the same declaration
  (`msgspec.inspect`) to name every bad field, with a message made from its type and limits;
- the OpenAPI `Event` schema (config/openapi.py calls `openapi_components`).

A few rules are not types, and are written once each as functions used both to accept an event
and to word its errors: the timestamp window, the cache-write split, and text that PostgreSQL
can store (no NUL, no lone surrogate). Unknown fields reject the event: prompt and response
text must never reach storage, whatever a client sends.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import msgspec.inspect as mi

MAX_TOKENS = 10_000_000
MAX_LATENCY_MS = 3_600_000
MAX_CLIENT_COST_USD = 1_000_000
MAX_FUTURE = timedelta(minutes=5)
MAX_PAST = timedelta(days=30)
MAX_METADATA_KEYS = 20

# A Meta's `extra={"type_error": ...}` words that field's type error itself (else the message
# comes from its type); msgspec ignores `extra`.
Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
Millis = Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text32 = Annotated[str, msgspec.Meta(max_length=32)]
Text64 = Annotated[str, msgspec.Meta(max_length=64)]
Text128 = Annotated[str, msgspec.Meta(max_length=128)]
Text256 = Annotated[str, msgspec.Meta(max_length=256)]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=200)]
Timestamp = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={
            "format": "date-time",
            "description": "RFC 3339 with offset; at most 5 min ahead, 30 days "
            "back (or the project's raw retention); default: now",
        },
        extra={"type_error": "must be an RFC 3339 string with offset"},
    ),
]
Status = Annotated[Literal["ok", "error"], msgspec.Meta(extra={"type_error": 'must be "ok" or "error"'})]
# An `anthropic-ratelimit-*` header value; stored as bigint, hence the bound.
MAX_RATELIMIT = 2**63 - 1
RateLimit = Annotated[int, msgspec.Meta(ge=0, le=MAX_RATELIMIT)]
HttpStatus = Annotated[
    int, msgspec.Meta(ge=100, le=599, extra={"type_error": "must be an integer between 100 and 599"})
]


# gc=False: the structs hold only strings, numbers and a dict of strings, so they can't be part of
# a reference cycle, and a batch makes hundreds of them for the cyclic collector to walk otherwise.
class CacheCreation(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Cache writes by TTL, as in Anthropic's `usage.cache_creation`."""

    ephemeral_5m_input_tokens: Tokens | None = None
    ephemeral_1h_input_tokens: Tokens | None = None


class Event(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One LLM API call. Null means "not given" (the default applies). Token fields follow
    Anthropic's `usage`: `input_tokens` excludes cache reads and writes. Strings must not contain
    NUL characters. Unknown fields reject the event: prompt and response text are never stored."""

    request_id: Id
    model: Id
    latency_ms: Millis
    timestamp: Timestamp | None = None
    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None
    cache_read_input_tokens: Tokens | None = None
    cache_creation_input_tokens: Tokens | None = None
    cache_creation: CacheCreation | None = None
    status: Status | None = None
    error_type: Text64 | None = None
    http_status: HttpStatus | None = None
    stop_reason: Text64 | None = None
    service: Text128 | None = None
    feature: Text128 | None = None
    user_id: Text256 | None = None
    provider: Text64 | None = None
    batch: bool | None = None
    service_tier: Text32 | None = None
    time_to_first_token_ms: Millis | None = None
    cost_usd: Annotated[float, msgspec.Meta(ge=0, le=MAX_CLIENT_COST_USD)] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(max_length=MAX_METADATA_KEYS)] | None = None
    ratelimit_requests_limit: RateLimit | None = None
    ratelimit_requests_remaining: RateLimit | None = None
    ratelimit_tokens_limit: RateLimit | None = None
    ratelimit_tokens_remaining: RateLimit | None = None
    ratelimit_input_tokens_limit: RateLimit | None = None
    ratelimit_input_tokens_remaining: RateLimit | None = None
    ratelimit_output_tokens_limit: RateLimit | None = None
    ratelimit_output_tokens_remaining: RateLimit | None = None


# The `ratelimit_*` fields of `Event`, in declaration order: also the order of `ValidEvent.ratelimit`
# and of their columns in ingest_event.
RATELIMIT_FIELDS = tuple(name for name in Event.__struct_fields__ if name.startswith("ratelimit_"))
NO_RATELIMIT: tuple[int | None, ...] = (None,) * len(RATELIMIT_FIELDS)


class _Batch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    events: list[Event]


_event_decoder = msgspec.json.Decoder(Event)
_batch_decoder = msgspec.json.Decoder(_Batch)


def openapi_components() -> dict[str, Any]:
    """`Event` and what it refers to, as OpenAPI component schemas."""
    _, components = msgspec.json.schema_components([Event], ref_template="#/components/schemas/{name}")
    return components


@dataclass(slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ValidEvent(NamedTuple):
    """An event that passed every rule, with defaults applied; cache writes are split into 5m and
    1h. A NamedTuple: one is made per event, and a tuple is built several times faster than a
    23-field dataclass instance."""

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
    ratelimit: tuple[int | None, ...] = NO_RATELIMIT  # the `ratelimit_*` values, in RATELIMIT_FIELDS order


class BodyError(ValueError):
    """The body as a whole is unusable (malformed JSON, wrong shape): 400 {"error": ...}."""


@dataclass(frozen=True, slots=True)
class Window:
    """The timestamps a request may carry: received at `now`, at most MAX_FUTURE ahead, at most
    `max_past` back (the project's raw retention, capped at MAX_PAST). Worked out once per body."""

    now: datetime
    max_past: timedelta
    earliest: datetime
    latest: datetime

    @classmethod
    def at(cls, now: datetime, max_past: timedelta = MAX_PAST) -> Window:
        max_past = min(max_past, MAX_PAST)
        return cls(now, max_past, now - max_past, now + MAX_FUTURE)


# --- the rules that are not types --------------------------------------------------------------

UNICODE_ERROR = "must be valid Unicode (no lone surrogate escapes such as \\ud800)"


def _text_problem(value: str) -> str | None:
    """Why PostgreSQL could not store `value`, if it could not. Lone surrogates ("\\ud800") only
    come through the json module's reading (see `_parse`)."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return UNICODE_ERROR
    return None


def _timestamp(value: str, window: Window) -> tuple[datetime, str | None]:
    """(the instant, None) or (anything, why not)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return window.now, "is not a valid RFC 3339 date-time"
    if parsed.tzinfo is None or ("T" not in value and "t" not in value):
        return window.now, "must include a time and a UTC offset, e.g. 2026-11-24T19:00:00Z"
    if parsed > window.latest:
        return parsed, "is more than 5 minutes in the future"
    if parsed < window.earliest:
        if parsed < window.now - MAX_PAST:
            return parsed, "is more than 30 days in the past"
        # Its hour would be re-rolled from raw events that retention has already deleted.
        return parsed, f"is older than this project's raw-event retention ({window.max_past.days} days)"
    return parsed, None


def _cache_writes(total: int | None, split: CacheCreation | None) -> tuple[int, int, int] | None:
    """(total, 5m, 1h) cache writes; None when the split does not add up to the total. Without a
    split every write counts as 5m (the API's default TTL); without a total, the split is it."""
    if split is None:
        return (total or 0), (total or 0), 0
    five = split.ephemeral_5m_input_tokens or 0
    hour = split.ephemeral_1h_input_tokens or 0
    if total is None:
        return five + hour, five, hour
    return (total, five, hour) if five + hour == total else None


SPLIT_ERROR = "ephemeral_5m + ephemeral_1h must equal cache_creation_input_tokens"


def _accept(e: Event, window: Window) -> ValidEvent | None:
    """The stored form of an event msgspec has checked, or None if a rule beyond types refuses it
    (then `_errors` says which). Runs for every event of every batch."""
    timestamp = window.now
    if e.timestamp is not None:
        timestamp, problem = _timestamp(e.timestamp, window)
        if problem:
            return None
    writes = _cache_writes(e.cache_creation_input_tokens, e.cache_creation)
    if writes is None:
        return None
    # A checked value of the right type that is falsy is 0, "" or False: `or` defaults it the same way.
    error_type, stop_reason, feature = e.error_type or "", e.stop_reason or "", e.feature or ""
    user_id, service_tier = e.user_id or "", e.service_tier or ""
    service, provider, metadata = e.service or "default", e.provider or "anthropic", e.metadata
    text = e.request_id + e.model + error_type + stop_reason + feature + user_id + service_tier + service + provider
    if metadata:
        text += "".join(metadata) + "".join(metadata.values())
    if _text_problem(text):
        return None
    return ValidEvent(
        e.request_id,
        e.model,
        timestamp,
        e.latency_ms,
        e.input_tokens or 0,
        e.output_tokens or 0,
        e.cache_read_input_tokens or 0,
        *writes,
        e.status or "ok",
        error_type,
        e.http_status,
        stop_reason,
        service,
        feature,
        user_id,
        provider,
        e.batch or False,
        service_tier,
        e.time_to_first_token_ms,
        e.cost_usd,
        metadata,
        (
            e.ratelimit_requests_limit,
            e.ratelimit_requests_remaining,
            e.ratelimit_tokens_limit,
            e.ratelimit_tokens_remaining,
            e.ratelimit_input_tokens_limit,
            e.ratelimit_input_tokens_remaining,
            e.ratelimit_output_tokens_limit,
            e.ratelimit_output_tokens_remaining,
        ),
    )


# --- field errors, from the declaration ----------------------------------------------------------


def _unwrap(t: mi.Type) -> tuple[mi.Type, dict[str, Any]]:
    """(the type under Optional and Annotated, the field's `extra`)."""
    extra: dict[str, Any] = {}
    if isinstance(t, mi.UnionType):
        t = next(member for member in t.types if not isinstance(member, mi.NoneType))
    if isinstance(t, mi.Metadata):
        extra = t.extra or {}
        t = t.type
    return t, extra


def _bounds(t: mi.IntType | mi.FloatType) -> tuple[float, float]:
    return (-math.inf if t.ge is None else t.ge), (math.inf if t.le is None else t.le)


def _value_errors(label: str, declared: mi.Type, value: Any) -> list[FieldError]:
    """Every way `value` breaks its declared type, worded from the type and its limits."""
    t, extra = _unwrap(declared)
    wrong = FieldError(label, extra.get("type_error", ""))
    if isinstance(t, mi.StrType):
        if not isinstance(value, str):
            return [wrong if wrong.message else FieldError(label, "must be a string")]
        if t.min_length and len(value) < t.min_length:
            return [FieldError(label, f"must be {t.min_length}..{t.max_length} characters")]
        if t.max_length is not None and len(value) > t.max_length:
            return [FieldError(label, f"must be at most {t.max_length} characters")]
        problem = _text_problem(value)
        return [FieldError(label, problem)] if problem else []
    if isinstance(t, mi.IntType | mi.FloatType):
        kinds = (int,) if isinstance(t, mi.IntType) else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            default = "must be an integer" if isinstance(t, mi.IntType) else "must be a number"
            return [wrong if wrong.message else FieldError(label, default)]
        low, high = _bounds(t)
        if not low <= value <= high:  # also refuses NaN, for which every comparison is false
            return [FieldError(label, f"must be between {low:,} and {high:,}")]
        return []
    if isinstance(t, mi.BoolType):
        return [] if isinstance(value, bool) else [FieldError(label, "must be true or false")]
    if isinstance(t, mi.LiteralType):
        choices = " or ".join(json.dumps(choice) for choice in t.values)
        return [] if value in t.values else [wrong if wrong.message else FieldError(label, f"must be {choices}")]
    if isinstance(t, mi.StructType):
        if not isinstance(value, dict):
            return [FieldError(label, "must be an object")]
        return _object_errors(t, value, prefix=f"{label}.")
    if isinstance(t, mi.DictType):
        if not isinstance(value, dict):
            return [FieldError(label, "must be an object of strings")]
        if t.max_length is not None and len(value) > t.max_length:
            return [FieldError(label, f"must have at most {t.max_length} keys")]
        errors = [
            FieldError(label, f"keys {e.message}") for key in value for e in _value_errors(label, t.key_type, key)
        ]
        for key, item in value.items():
            errors += _value_errors(f"{label}.{key}", t.value_type, item)
        return errors
    raise TypeError(f"no error wording for {t!r}")  # pragma: no cover - a new kind of field in Event


def _object_errors(t: mi.StructType, raw: dict[str, Any], *, prefix: str = "") -> list[FieldError]:
    names = {f.encode_name for f in t.fields}
    unknown = "is not a known field" + ("" if prefix else " (prompt and response text are never accepted)")
    errors = [FieldError(f"{prefix}{name}", unknown) for name in raw if name not in names]
    for f in t.fields:
        value = raw.get(f.encode_name)
        if value is None:
            if f.required:
                errors.append(FieldError(f"{prefix}{f.encode_name}", "is required"))
        else:
            errors += _value_errors(f"{prefix}{f.encode_name}", f.type, value)
    return errors


_event_info = mi.type_info(Event)
if not isinstance(_event_info, mi.StructType):  # pragma: no cover - Event is a Struct
    raise TypeError("Event must be a msgspec Struct")
_EVENT_TYPE: mi.StructType = _event_info


def max_length(field: str) -> int:
    """The declared maximum length of a string field of `Event` (of its values, for `metadata`)."""
    t, _ = _unwrap(next(f.type for f in _EVENT_TYPE.fields if f.name == field))
    if isinstance(t, mi.DictType):
        t, _ = _unwrap(t.value_type)
    if not isinstance(t, mi.StrType) or t.max_length is None:
        raise ValueError(f"{field} is not a string field with a maximum length")
    return t.max_length


def _errors(raw: dict[str, Any], window: Window) -> list[FieldError]:
    """Every error of an event that `Event` and `_accept` refused, in field order."""
    errors = _object_errors(_EVENT_TYPE, raw)
    bad = {e.field.split(".")[0] for e in errors}
    value = raw.get("timestamp")
    if "timestamp" not in bad and value is not None:
        _, problem = _timestamp(value, window)
        if problem:
            errors.append(FieldError("timestamp", problem))
    if not bad & {"cache_creation", "cache_creation_input_tokens"} and raw.get("cache_creation") is not None:
        split = msgspec.convert(raw["cache_creation"], CacheCreation)
        if _cache_writes(raw.get("cache_creation_input_tokens"), split) is None:
            errors.append(FieldError("cache_creation", SPLIT_ERROR))
    return errors


# --- bodies ------------------------------------------------------------------------------------


def event_validate(raw: Any, *, window: Window) -> tuple[ValidEvent | None, list[FieldError]]:
    """One parsed event: (the event, []) or (None, every error found)."""
    if not isinstance(raw, dict):
        return None, [FieldError("event", "must be a JSON object")]
    try:
        event = _accept(msgspec.convert(raw, Event), window)
    except (msgspec.ValidationError, UnicodeEncodeError):  # msgspec measures str lengths in UTF-8
        event = None
    if event is None:
        return None, _errors(raw, window)
    return event, []


def _parse(data: bytes) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        pass
    # What msgspec refuses but the json module reads: lone surrogate escapes ("\ud800") and NaN.
    # Such a value then rejects only its own event, by field, and the rest of the batch is kept.
    try:
        return json.loads(data)
    except ValueError as exc:
        raise BodyError(f"malformed JSON or gzip: {exc}") from None


def _body_events(body: Any, *, max_batch: int) -> list[Any]:
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


def _decode(data: bytes, window: Window, max_batch: int) -> list[ValidEvent] | None:
    """Every event of a body whose events are all valid, decoded straight into `Event`s; None for
    any other body (which `body_validate` then takes event by event)."""
    try:
        structs = [_event_decoder.decode(data)]  # a single event, the commonest request
    except msgspec.DecodeError:  # ValidationError included
        try:
            structs = _batch_decoder.decode(data).events
        except msgspec.DecodeError:
            return None
    if not 1 <= len(structs) <= max_batch:
        return None
    valid = []
    for struct in structs:
        event = _accept(struct, window)
        if event is None:
            return None
        valid.append(event)
    return valid


def body_validate(
    body: bytes | Any, *, window: Window, max_batch: int
) -> tuple[list[ValidEvent], list[dict[str, Any]]]:
    """(valid events, rejections {"index": i, "errors": [...]}) of a body: JSON bytes as received,
    or already parsed. BodyError when the body as a whole is unusable."""
    if isinstance(body, bytes):
        valid = _decode(body, window, max_batch)
        if valid is not None:
            return valid, []
        body = _parse(body)
    events: list[ValidEvent] = []
    rejected: list[dict[str, Any]] = []
    for index, raw in enumerate(_body_events(body, max_batch=max_batch)):
        event, errors = event_validate(raw, window=window)
        if event is None:
            rejected.append({"index": index, "errors": [e.as_dict() for e in errors]})
        else:
            events.append(event)
    return events, rejected
