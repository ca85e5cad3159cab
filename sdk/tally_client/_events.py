"""Event dicts: what the instrumentation captures, and how it goes on the wire.

Field names follow Tally's ingest contract (CONTRACT §3), which follows Anthropic's `usage`
object: `input_tokens` is the *uncached* input; cache writes are `cache_creation_input_tokens`
with an optional `cache_creation` 5m/1h split.

Work is split in two on purpose. On the application's thread we only copy numbers out of the
response into a dict (a few µs). Formatting the timestamp, hashing the user id and clamping
values to the server's limits happen later, on the sender thread (`to_wire`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import uuid
from datetime import UTC, datetime
from typing import Any

# Every field the server accepts (anything else rejects the whole event server-side).
FIELDS = frozenset(
    {
        "request_id",
        "model",
        "timestamp",
        "latency_ms",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_creation",
        "status",
        "error_type",
        "http_status",
        "stop_reason",
        "service",
        "feature",
        "user_id",
        "provider",
        "batch",
        "service_tier",
        "time_to_first_token_ms",
        "cost_usd",
        "metadata",
        "ratelimit_requests_limit",
        "ratelimit_requests_remaining",
        "ratelimit_tokens_limit",
        "ratelimit_tokens_remaining",
        "ratelimit_input_tokens_limit",
        "ratelimit_input_tokens_remaining",
        "ratelimit_output_tokens_limit",
        "ratelimit_output_tokens_remaining",
    }
)
# `anthropic-ratelimit-<kind>-<limit|remaining>` response header -> event field.
RATELIMIT_HEADERS = {
    f"anthropic-ratelimit-{kind}-{which}": f"ratelimit_{kind.replace('-', '_')}_{which}"
    for kind in ("requests", "tokens", "input-tokens", "output-tokens")
    for which in ("limit", "remaining")
}
_MAX_RATELIMIT = 2**63 - 1  # the server's bound (stored as bigint)
# Server-side length limits of the string fields (ingest/schemas.py); longer values are cut
# here rather than having the whole event rejected.
_MAX_LEN = {
    "request_id": 128,
    "model": 128,
    "error_type": 64,
    "stop_reason": 64,
    "feature": 128,
    "user_id": 256,
    "service_tier": 32,
    "service": 128,
    "provider": 64,
}
_TOKENS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
MAX_TOKENS = 10_000_000
MAX_LATENCY_MS = 3_600_000.0
MAX_METADATA_KEYS = 20
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 200


def new_request_id() -> str:
    """For calls that never got a `request-id` header (timeouts, connection errors): still one event."""
    return "tally_" + uuid.uuid4().hex


def usage_into(event: dict[str, Any], usage: Any) -> None:
    """Copy an Anthropic `Usage` (or `MessageDeltaUsage`) into `event`. Fields that are None are
    left as they were: message_delta's counts are cumulative and overwrite message_start's."""
    if usage is None:
        return
    for name in _TOKENS:
        value = getattr(usage, name, None)
        if value is not None:
            event[name] = value
    split = getattr(usage, "cache_creation", None)
    if split is not None:
        event["cache_creation"] = {
            "ephemeral_5m_input_tokens": getattr(split, "ephemeral_5m_input_tokens", 0) or 0,
            "ephemeral_1h_input_tokens": getattr(split, "ephemeral_1h_input_tokens", 0) or 0,
        }
    tier = getattr(usage, "service_tier", None)
    if tier:
        event["service_tier"] = tier


def ratelimit_into(event: dict[str, Any], headers: Any) -> None:
    """Copy the `anthropic-ratelimit-*` limit/remaining headers of a response into `event`. A value
    that is not a non-negative integer is left out (the server would reject the whole event)."""
    if headers is None:
        return
    get = headers.get
    for header, name in RATELIMIT_HEADERS.items():
        value = get(header)
        if value is not None:
            value = value.strip()
            if value.isdigit() and value.isascii() and int(value) <= _MAX_RATELIMIT:
                event[name] = int(value)


def message_into(event: dict[str, Any], message: Any) -> None:
    """Copy model, usage and stop reason of an Anthropic `Message` into `event`."""
    model = getattr(message, "model", None)
    if model:
        event["model"] = model
    usage_into(event, getattr(message, "usage", None))
    stop = getattr(message, "stop_reason", None)
    if stop:
        event["stop_reason"] = stop


# Error types for statuses whose body did not say (CONTRACT §3 examples use the API's names).
_STATUS_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_fields(exc: BaseException, anthropic: Any) -> dict[str, Any] | None:
    """status/error_type/http_status/request_id of an SDK exception, or None if it is not an API
    error (a TypeError from bad arguments is the application's bug, not an API call)."""
    if not isinstance(exc, anthropic.APIError):
        return None
    fields: dict[str, Any] = {"status": "error"}
    if isinstance(exc, anthropic.APITimeoutError):
        fields["error_type"] = "timeout"
    elif isinstance(exc, anthropic.APIConnectionError):
        fields["error_type"] = "connection_error"
    elif isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        # An `error` event inside a stream carries the stream's own status (200): not an HTTP error.
        if status >= 400:
            fields["http_status"] = status
        fields["error_type"] = (
            getattr(exc, "type", None)
            or _STATUS_ERROR_TYPES.get(status)
            or ("api_error" if status >= 500 else f"http_{status}")
        )
        if exc.request_id:
            fields["request_id"] = exc.request_id
    elif isinstance(exc, anthropic.APIResponseValidationError):
        fields["error_type"] = "response_validation_error"
    else:
        fields["error_type"] = "client_error"
    return fields


def _clean_metadata(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict) or not value:
        return None
    out: dict[str, str] = {}
    for key, item in value.items():
        if len(out) >= MAX_METADATA_KEYS:
            break
        key = str(key)[:MAX_METADATA_KEY]
        if key and item is not None:
            out[key] = str(item)[:MAX_METADATA_VALUE].replace("\x00", "")
    return out or None


def _clean_tokens(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(0, min(int(value), MAX_TOKENS))


def hash_user_id(user_id: str, key: bytes) -> str:
    return hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()


def _wire_str(name: str, value: Any) -> str:
    if type(value) is not str:
        value = str(value)
    if len(value) > _MAX_LEN[name] or "\x00" in value:
        value = value[: _MAX_LEN[name]].replace("\x00", "")
    return value


def wire_user_id(user_id: Any, key: bytes | None) -> str:
    """A user id as `to_wire` sends it (hashed when there is a key): what Tally stores and scopes by."""
    return _wire_str("user_id", hash_user_id(str(user_id), key) if key is not None else user_id)


def wire_service(service: Any) -> str:
    """A service name as `to_wire` sends it."""
    return _wire_str("service", service)


_KIND = {
    **dict.fromkeys(_MAX_LEN, "str"),
    **dict.fromkeys(_TOKENS, "tokens"),
    "timestamp": "timestamp",
    "latency_ms": "ms",
    "time_to_first_token_ms": "ms",
    "metadata": "metadata",
    "cache_creation": "split",
    "status": "any",
    "http_status": "any",
    "batch": "any",
    "cost_usd": "any",
    **dict.fromkeys(RATELIMIT_HEADERS.values(), "any"),
}  # ints checked by ratelimit_into


def to_wire(event: dict[str, Any], *, user_id_key: bytes | None) -> dict[str, Any]:
    """The JSON object sent for one event: timestamps formatted, user id hashed if configured,
    values clamped to the server's limits, empty optional fields left out.

    Runs on the sender thread, but holds the GIL like any Python code: the common case (values
    already of the right type and size) takes the short branch of each kind.
    """
    out: dict[str, Any] = {}
    for name, value in event.items():
        if value is None or value == "":
            continue
        kind = _KIND.get(name)
        if kind == "str":
            if name == "user_id" and user_id_key is not None:
                value = hash_user_id(str(value), user_id_key)
            elif type(value) is not str:
                value = str(value)
            if len(value) > _MAX_LEN[name] or "\x00" in value:
                value = value[: _MAX_LEN[name]].replace("\x00", "")
        elif kind == "tokens":
            if type(value) is not int or not 0 <= value <= MAX_TOKENS:
                value = _clean_tokens(value)
        elif kind == "timestamp":
            if isinstance(value, int | float):
                value = datetime.fromtimestamp(value, UTC).isoformat()
            elif isinstance(value, datetime):
                value = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        elif kind == "ms":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            value = max(0.0, min(float(value), MAX_LATENCY_MS))
        elif kind == "metadata":
            value = _clean_metadata(value)
            if value is None:
                continue
        elif kind is None:
            continue
        out[name] = value
    split = out.get("cache_creation")
    if split is not None:
        # The server rejects a split that does not add up to the total: keep the total, drop the split.
        try:
            five = _clean_tokens(split.get("ephemeral_5m_input_tokens", 0))
            hour = _clean_tokens(split.get("ephemeral_1h_input_tokens", 0))
        except AttributeError:
            five, hour = -1, -1
        total = out.get("cache_creation_input_tokens")
        if five < 0 or (total is not None and five + hour != total) or (total is None and five + hour == 0):
            del out["cache_creation"]
        else:
            out["cache_creation"] = {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour}
    if "request_id" not in out:
        out["request_id"] = new_request_id()
    if "latency_ms" not in out:
        out["latency_ms"] = 0.0
    return out
