"""OTLP/HTTP traces in, events out (CONTRACT §3 `POST /v1/traces`).

Spans that describe a model call with OpenTelemetry GenAI attributes (`gen_ai.*`) become
CONTRACT §3 events and go through `events_ingest`, so validation, pricing, deduplication and
the commit-before-answer promise are exactly those of `POST /api/v1/events`.

Invariants:
- Every span that looks like a model call either becomes an event or is counted in
  `partial_success.rejected_spans` with a reason. Other spans (HTTP, database, agent/tool
  spans, the SDK's batch-management spans) are ignored: they are not calls we can price.
- Token counts are normalised to Anthropic's meaning (`input_tokens` EXCLUDES cache reads and
  writes). The semantic conventions' `gen_ai.usage.input_tokens` "SHOULD include" cached tokens,
  and the Anthropic SDK's native spans and OpenLLMetry follow that; OpenLIT reports the raw,
  uncached `usage.input_tokens` (tech-facts §4.2). So cache tokens are subtracted unless the
  instrumentation scope is OpenLIT's.
- One call traced twice (e.g. the SDK's native span and OpenLLMetry's) is stored once: the
  idempotency key is `gen_ai.response.id` (the message id, which both carry), then
  `anthropic.request.id` (which only the native spans carry), then the trace/span id. Within
  an export the native span goes first, so its figures win (OpenLLMetry over-counts streamed
  output tokens).
- Nothing of a prompt or a response is read: only the attributes named below.

OTLP/JSON is not proto3 JSON: trace and span ids are hex (not base64), enums are integers and
unknown fields must be ignored. `request_parse` converts the ids before `ParseDict`.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from ingest.schemas import BodyError, max_length
from ingest.services import IngestResult, events_ingest

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = frozenset({PROTOBUF, "application/protobuf", JSON})

NATIVE_SCOPE = "com.anthropic.sdk.python"
OPENLLMETRY_SCOPE = "opentelemetry.instrumentation.anthropic"
# Operations that are one billed model call. Agent and tool spans (invoke_agent, execute_tool)
# often repeat their children's usage, so counting them would double the cost.
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
# OpenLLMetry maps Anthropic's stop reasons to OpenAI-style finish reasons; map them back.
_OPENLLMETRY_FINISH = {"stop": "end_turn", "tool_call": "tool_use", "length": "max_tokens"}
# error.type spellings -> the API's error types (OpenLLMetry and OpenLIT report class names).
_ERROR_TYPES = {
    "client_timeout_error": "timeout",
    "APITimeoutError": "timeout",
    "TimeoutError": "timeout",
    "APIConnectionError": "connection_error",
    "RateLimitError": "rate_limit_error",
    "OverloadedError": "overloaded_error",
    "InternalServerError": "api_error",
    "BadRequestError": "invalid_request_error",
    "AuthenticationError": "authentication_error",
    "PermissionDeniedError": "permission_error",
    "NotFoundError": "not_found_error",
    "ServiceUnavailableError": "api_error",
}
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
_MAX_ERROR_MESSAGE = 1000


class OtlpBodyError(ValueError):
    """The body is not an ExportTraceServiceRequest in the declared encoding: 400."""


class SpanRejected(ValueError):
    pass


@dataclass
class TracesResult:
    spans: int = 0
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)


# -- parsing ---------------------------------------------------------------------------------


def _hex_to_base64(value: Any) -> Any:
    if isinstance(value, str) and value and len(value) % 2 == 0:
        try:
            return base64.b64encode(bytes.fromhex(value)).decode()
        except ValueError:
            return value  # not hex: leave it to ParseDict (it may already be base64)
    return value


def _ids_to_base64(document: Any) -> None:
    """OTLP/JSON ids are hex; proto3 JSON `bytes` are base64 (a 32-hex-digit id would otherwise
    be silently decoded as 24 bytes of base64)."""
    for resource_spans in document.get("resourceSpans") or []:
        for scope_spans in (resource_spans or {}).get("scopeSpans") or []:
            for span in (scope_spans or {}).get("spans") or []:
                if not isinstance(span, dict):
                    continue
                for name in _ID_FIELDS:
                    if name in span:
                        span[name] = _hex_to_base64(span[name])
                for link in span.get("links") or []:
                    if isinstance(link, dict):
                        for name in ("traceId", "spanId"):
                            if name in link:
                                link[name] = _hex_to_base64(link[name])


def request_parse(body: bytes, *, content_type: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    if content_type == JSON:
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise OtlpBodyError(f"malformed JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise OtlpBodyError("body must be a JSON object (ExportTraceServiceRequest)")
        try:
            _ids_to_base64(document)
            json_format.ParseDict(document, request, ignore_unknown_fields=True)
        except (json_format.ParseError, AttributeError, TypeError, ValueError) as exc:
            raise OtlpBodyError(f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
        return request
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError) as exc:
        raise OtlpBodyError(f"not a protobuf ExportTraceServiceRequest: {exc}") from exc
    return request


# -- spans -> events ---------------------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _count(attrs: dict[str, Any], *names: str) -> int | None:
    """A token count: the first of `names` present, as a non-negative int (ints may arrive as
    doubles or strings from some exporters)."""
    for name in names:
        value = attrs.get(name)
        if value is None or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SpanRejected(f"{name} is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise SpanRejected(f"{name} must be a non-negative number")
        return int(number)
    return None


def _is_model_call(attrs: dict[str, Any]) -> bool:
    if not any(name.startswith("gen_ai.") for name in attrs):
        return False
    operation = attrs.get("gen_ai.operation.name")
    if operation is not None:
        return operation in MODEL_OPERATIONS
    return any(name.startswith("gen_ai.usage.") for name in attrs) or "gen_ai.request.model" in attrs


def _text(value: Any, field: str) -> str | None:
    """`value` as the event's `field`, cut to that field's declared length."""
    if value is None or value == "":
        return None
    return str(value)[: max_length(field)]


def _error_type(value: Any) -> str:
    text = str(value) if value not in (None, "") else "error"
    return _ERROR_TYPES.get(text, text)[: max_length("error_type")]


def _tokens(attrs: dict[str, Any], scope: str) -> dict[str, Any]:
    tokens: dict[str, Any] = {}
    read = _count(attrs, "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
    write = _count(
        attrs,
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
    )
    five = _count(attrs, "anthropic.usage.cache_creation.ephemeral_5m_input_tokens")
    hour = _count(attrs, "anthropic.usage.cache_creation.ephemeral_1h_input_tokens")
    if five is not None or hour is not None:
        split = (five or 0) + (hour or 0)
        if write is None:
            write = split
        if write == split:  # an inconsistent split is ignored: all writes are then priced as 5m
            tokens["cache_creation"] = {"ephemeral_5m_input_tokens": five or 0, "ephemeral_1h_input_tokens": hour or 0}
    inputs = _count(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
    if inputs is not None and not scope.startswith("openlit"):
        inputs = max(0, inputs - (read or 0) - (write or 0))
    outputs = _count(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
    for name, value in (
        ("input_tokens", inputs),
        ("output_tokens", outputs),
        ("cache_read_input_tokens", read),
        ("cache_creation_input_tokens", write),
    ):
        if value is not None:
            tokens[name] = value
    return tokens


def span_event(span: Span, *, scope: str, service: str | None) -> dict[str, Any] | None:
    """The event of one span, None if the span is not a model call; SpanRejected if it is one
    we cannot turn into an event."""
    attrs = _attributes(span.attributes)
    if not _is_model_call(attrs):
        return None
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
    if not isinstance(model, str) or not model:
        raise SpanRejected("no gen_ai.request.model or gen_ai.response.model")
    trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
    request_id = attrs.get("gen_ai.response.id") or attrs.get("anthropic.request.id") or f"otel-{trace_id}-{span_id}"
    event: dict[str, Any] = {
        "request_id": str(request_id),
        "model": model,
        "provider": _text(attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system"), "provider"),
        "service": service,
        **_tokens(attrs, scope),
        "metadata": {"trace_id": trace_id, "span_id": span_id},
    }
    if span.start_time_unix_nano:
        event["timestamp"] = datetime.fromtimestamp(span.start_time_unix_nano / 1e9, UTC).isoformat()
        event["latency_ms"] = max(0.0, (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6)
    else:
        event["latency_ms"] = 0.0
    ttft = attrs.get("gen_ai.response.time_to_first_chunk", attrs.get("gen_ai.server.time_to_first_token"))
    if isinstance(ttft, int | float) and not isinstance(ttft, bool) and math.isfinite(ttft) and ttft >= 0:
        event["time_to_first_token_ms"] = ttft * 1000.0
    stop = attrs.get("anthropic.message.stop_reason")
    if not stop:
        reasons = attrs.get("gen_ai.response.finish_reasons")
        stop = reasons[0] if isinstance(reasons, list) and reasons else reasons
        if scope == OPENLLMETRY_SCOPE and isinstance(stop, str):
            stop = _OPENLLMETRY_FINISH.get(stop, stop)
    event["stop_reason"] = _text(stop, "stop_reason")
    event["service_tier"] = _text(attrs.get("anthropic.response.service_tier"), "service_tier")
    event["feature"] = _text(attrs.get("tally.feature"), "feature")
    event["user_id"] = _text(attrs.get("user.id") or attrs.get("enduser.id"), "user_id")
    # Rate-limit headroom (the ratelimit_* fields) is not mapped: no instrumentation puts the
    # `anthropic-ratelimit-*` headers on its spans (the anthropic SDK's native spans, anthropic
    # 2.14 `_tracing.py`, keep only request, organization and workspace ids; OpenLLMetry 0.62.4 and
    # OpenLIT 1.45 none). A 429 still arrives here as http_status 429, which rollups count.
    status_code = attrs.get("http.response.status_code")
    if isinstance(status_code, int) and not isinstance(status_code, bool) and 100 <= status_code <= 599:
        event["http_status"] = status_code
    if span.status.code == Status.STATUS_CODE_ERROR or attrs.get("error.type"):
        event["status"] = "error"
        event["error_type"] = _error_type(attrs.get("error.type"))
    if attrs.get("anthropic.request.id") and attrs.get("anthropic.request.id") != request_id:
        event["metadata"]["anthropic_request_id"] = str(attrs["anthropic.request.id"])[: max_length("metadata")]
    return {name: value for name, value in event.items() if value is not None}


def _span_label(span: Span) -> str:
    return f"span {span.span_id.hex() or '?'} ({span.name[:60]})"


def spans_events(request: ExportTraceServiceRequest) -> tuple[list[dict[str, Any]], list[str], int]:
    """(events with their span labels, rejection reasons, spans seen). Native SDK spans first."""
    found: list[tuple[int, dict[str, Any]]] = []
    rejected: list[str] = []
    seen = 0
    for resource_spans in request.resource_spans:
        service = _text(_attributes(resource_spans.resource.attributes).get("service.name"), "service")
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                seen += 1
                try:
                    event = span_event(span, scope=scope, service=service)
                except SpanRejected as exc:
                    rejected.append(f"{_span_label(span)}: {exc}")
                    continue
                if event is not None:
                    event["_label"] = _span_label(span)
                    found.append((0 if scope == NATIVE_SCOPE else 1, event))
    found.sort(key=lambda pair: pair[0])  # stable: the native span of a call is stored, its twin is a duplicate
    return [event for _, event in found], rejected, seen


def traces_ingest(
    *, project_id: int, environment_id: int, request: ExportTraceServiceRequest, max_batch: int
) -> TracesResult:
    """Store the model-call spans of one export as events; every accepted one is committed on return."""
    events, rejected, seen = spans_events(request)
    result = TracesResult(spans=seen, events=len(events), rejected=rejected)
    for start in range(0, len(events), max_batch):
        chunk = events[start : start + max_batch]
        labels = [event.pop("_label") for event in chunk]
        try:
            ingested: IngestResult = events_ingest(
                project_id=project_id, environment_id=environment_id, body={"events": chunk}, max_batch=max_batch
            )
        except BodyError as exc:  # pragma: no cover - the chunks are built to the right shape
            result.rejected += [f"{label}: {exc}" for label in labels]
            continue
        result.accepted += ingested.accepted
        result.duplicates += ingested.duplicates
        for rejection in ingested.rejected:
            errors = "; ".join(f"{e['field']} {e['message']}" for e in rejection["errors"])
            result.rejected.append(f"{labels[rejection['index']]}: {errors}")
    return result


# -- answers -----------------------------------------------------------------------------------


def response_body(result: TracesResult, *, content_type: str) -> bytes:
    """ExportTraceServiceResponse, with partial_success only when spans were rejected (OTLP spec)."""
    response = ExportTraceServiceResponse()
    if result.rejected:
        message = "; ".join(result.rejected[:5])
        if len(result.rejected) > 5:
            message += f"; and {len(result.rejected) - 5} more"
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=len(result.rejected), error_message=message[:_MAX_ERROR_MESSAGE])
        )
    if content_type == JSON:
        return json.dumps(json_format.MessageToDict(response)).encode()
    return response.SerializeToString()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


INVALID_ARGUMENT = 3  # google.rpc.Code


def status_body(message: str, *, content_type: str, code: int = INVALID_ARGUMENT) -> bytes:
    """A google.rpc.Status {code, message}: JSON, or protobuf encoded by hand (fields 1 and 2),
    which spares a dependency on googleapis-common-protos for two fields."""
    if content_type == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
