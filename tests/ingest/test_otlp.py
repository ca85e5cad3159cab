"""POST /v1/traces: OTLP/HTTP spans with GenAI attributes become events (protobuf and JSON,
gzip, partial success), sent by hand-written OTLP/JSON, by the real OpenTelemetry SDK
exporter, by the anthropic SDK's native spans and by OpenLLMetry's instrumentation."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import pytest
from django.test import Client
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ingest.models import Event
from ingest.otlp import _ids_to_base64
from projects.services import ingest_key_create
from tests.sdk.fake_anthropic import FakeAnthropic

MODEL = "claude-sonnet-4-6"
NATIVE = "com.anthropic.sdk.python"
OPENLLMETRY = "opentelemetry.instrumentation.anthropic"
# claude-sonnet-4-6 at $3 in / $15 out / $0.30 read / $3.75 5m write / $6 1h write per MTok:
# 12*3 + 2000*0.30 + 40*3.75 + 60*6 + 5*15 = 1221 per million tokens.
CACHE_COST = Decimal("0.001221")
PLAIN_COST = Decimal("0.000111")  # 12*3 + 5*15


# -- OTLP/JSON building blocks ------------------------------------------------------------------


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        wrapped: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        wrapped = {"intValue": str(value)}  # OTLP/JSON: int64 as a decimal string
    elif isinstance(value, float):
        wrapped = {"doubleValue": value}
    elif isinstance(value, list):
        wrapped = {"arrayValue": {"values": [{"stringValue": v} for v in value]}}
    else:
        wrapped = {"stringValue": value}
    return {"key": key, "value": wrapped}


_span_ids = iter(range(1, 1_000_000))


def span(
    attrs: dict[str, Any],
    *,
    name: str = "chat claude-sonnet-4-6",
    error: bool = False,
    start_ns: int | None = None,
    duration_ms: float = 1500.0,
) -> dict[str, Any]:
    start = start_ns or time.time_ns() - 60 * 10**9
    n = next(_span_ids)
    return {
        "traceId": f"{n:032x}",
        "spanId": f"{n:016x}",
        "name": name,
        "kind": 3,  # enum as an integer
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + int(duration_ms * 1e6)),
        "attributes": [attr(k, v) for k, v in attrs.items()],
        "status": {"code": 2} if error else {},
        "droppedEventsCount": 0,
        "someFutureField": {"ignored": True},  # unknown fields MUST be ignored
    }


def export(scopes: dict[str, list[dict[str, Any]]], *, service: str = "checkout") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", service)]},
                "scopeSpans": [
                    {"scope": {"name": name, "version": "1.0"}, "spans": spans} for name, spans in scopes.items()
                ],
            }
        ]
    }


def native_attrs(**overrides: Any) -> dict[str, Any]:
    """What the anthropic SDK's native span carries for the fake's `cache` answer (tech-facts §1.8)."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "gen_ai.response.id": "msg_native_1",
        "anthropic.request.id": "req_native_1",
        "gen_ai.usage.input_tokens": 2112,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_write.input_tokens": 100,
        "anthropic.usage.cache_creation.ephemeral_5m_input_tokens": 40,
        "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 60,
        "anthropic.message.stop_reason": "end_turn",
        "anthropic.response.service_tier": "standard",
        "http.response.status_code": 200,
        **overrides,
    }


def post_json(client: Client, secret: str | None, body: Any, **headers: str):  # type: ignore[no-untyped-def]
    if secret is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/traces", data=data, content_type="application/json", **headers)


def post_protobuf(client: Client, secret: str, request: ExportTraceServiceRequest | bytes, *, gzip_body: bool = False):  # type: ignore[no-untyped-def]
    data = request if isinstance(request, bytes) else request.SerializeToString()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    if gzip_body:
        data = gzip.compress(data)
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    return client.post("/v1/traces", data=data, content_type="application/x-protobuf", **headers)


def as_protobuf(body: dict[str, Any]) -> ExportTraceServiceRequest:
    body = json.loads(json.dumps(body))
    _ids_to_base64(body)
    return json_format.ParseDict(body, ExportTraceServiceRequest(), ignore_unknown_fields=True)


def stored() -> dict[str, Event]:
    return {e.request_id: e for e in Event.objects.all()}


# -- hand-written exports through the test client ----------------------------------------------


def test_native_sdk_span_becomes_an_event_in_anthropics_token_terms(ingest_key):
    secret, _ = ingest_key
    started = time.time_ns() - 60 * 10**9
    resp = post_json(Client(), secret, export({NATIVE: [span(native_attrs(), start_ns=started, duration_ms=1234.5)]}))
    assert resp.status_code == 200
    assert resp["Content-Type"] == "application/json"
    assert resp.json() == {}  # full success: no partialSuccess
    event = stored()["msg_native_1"]
    # gen_ai.usage.input_tokens (2112) includes the cache: 2112 - 2000 read - 100 written = 12 uncached.
    assert (event.input_tokens, event.output_tokens, event.cache_read_input_tokens) == (12, 5, 2000)
    assert (event.cache_creation_input_tokens, event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (
        100,
        40,
        60,
    )
    assert (event.model, event.service, event.stop_reason, event.service_tier, event.status) == (
        MODEL,
        "checkout",
        "end_turn",
        "standard",
        "ok",
    )
    assert event.latency_ms == pytest.approx(1234.5)
    assert event.timestamp.timestamp() == pytest.approx(started / 1e9, abs=1e-6)
    assert event.cost_usd == CACHE_COST
    assert event.metadata["anthropic_request_id"] == "req_native_1"
    assert event.metadata["trace_id"] == f"{int(event.metadata['span_id'], 16):032x}"  # hex ids survived


def test_openlit_reports_uncached_input_and_the_old_cache_attribute_name(ingest_key):
    secret, _ = ingest_key
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.id": "msg_openlit",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_creation.input_tokens": 100,
        "gen_ai.response.finish_reasons": ["end_turn"],
        "gen_ai.server.time_to_first_token": 0.25,
    }
    assert post_json(Client(), secret, export({"openlit.otel.tracing": [span(attrs)]})).status_code == 200
    event = stored()["msg_openlit"]
    assert (event.input_tokens, event.cache_read_input_tokens, event.cache_creation_input_tokens) == (12, 2000, 100)
    assert (event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (100, 0)  # no split: all 5m
    assert event.stop_reason == "end_turn"
    assert event.time_to_first_token_ms == pytest.approx(250)


def test_openllmetry_finish_reasons_are_mapped_back_to_stop_reasons(ingest_key):
    secret, _ = ingest_key
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.id": "msg_tool",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.finish_reasons": ["tool_call"],
    }
    assert post_json(Client(), secret, export({OPENLLMETRY: [span(attrs, name="anthropic.chat")]})).status_code == 200
    event = stored()["msg_tool"]
    assert (event.stop_reason, event.input_tokens, event.cost_usd) == ("tool_use", 12, PLAIN_COST)


def test_error_spans_become_error_events(ingest_key):
    secret, _ = ingest_key
    native = span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": MODEL,
            "anthropic.request.id": "req_e1",
            "error.type": "overloaded_error",
            "http.response.status_code": 529,
        },
        error=True,
    )
    timeout = span(
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": MODEL, "error.type": "client_timeout_error"},
        error=True,
    )
    openllmetry = span(
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": MODEL, "error.type": "RateLimitError"}, error=True
    )
    body = export({NATIVE: [native, timeout], OPENLLMETRY: [openllmetry]})
    assert post_json(Client(), secret, body).status_code == 200
    events = stored()
    assert (events["req_e1"].status, events["req_e1"].error_type, events["req_e1"].http_status) == (
        "error",
        "overloaded_error",
        529,
    )
    by_type = {e.error_type: e for e in events.values()}
    assert set(by_type) == {"overloaded_error", "timeout", "rate_limit_error"}
    assert by_type["timeout"].request_id == f"otel-{timeout['traceId']}-{timeout['spanId']}"
    assert all(e.cost_usd == 0 for e in events.values())


def test_spans_that_are_not_model_calls_are_ignored(ingest_key):
    secret, _ = ingest_key
    body = export(
        {
            "opentelemetry.instrumentation.django": [span({"http.route": "/search", "http.response.status_code": 200})],
            "agents": [
                span(
                    {
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.request.model": MODEL,
                        "gen_ai.usage.input_tokens": 99,
                    }
                )
            ],
            NATIVE: [
                span(
                    {"gen_ai.provider.name": "anthropic", "anthropic.message.batch.id": "msgbatch_1"},
                    name="anthropic.messages.batches.create",
                )
            ],
        }
    )
    resp = post_json(Client(), secret, body)
    assert resp.status_code == 200
    assert resp.json() == {}
    assert stored() == {}


def test_rejected_spans_are_reported_as_partial_success(ingest_key):
    secret, _ = ingest_key
    body = export(
        {
            NATIVE: [
                span(native_attrs(**{"gen_ai.response.id": "msg_ok"})),
                span({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 5}),  # no model
                span(native_attrs(**{"gen_ai.response.id": "msg_old"}), start_ns=time.time_ns() - 40 * 86400 * 10**9),
                span(native_attrs(**{"gen_ai.response.id": "msg_neg", "gen_ai.usage.output_tokens": -3})),
            ]
        }
    )
    resp = post_json(Client(), secret, body)
    assert resp.status_code == 200
    partial = resp.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "3"  # int64 as a string, per the proto3 JSON mapping
    assert "no gen_ai.request.model" in partial["errorMessage"]
    assert "timestamp is more than 30 days in the past" in partial["errorMessage"]
    assert "output_tokens must be a non-negative number" in partial["errorMessage"]
    assert set(stored()) == {"msg_ok"}


def test_one_call_traced_by_two_instrumentations_is_stored_once_with_the_native_figures(ingest_key):
    secret, _ = ingest_key
    twin = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.id": "msg_twice",
        "gen_ai.usage.input_tokens": 2112,
        "gen_ai.usage.output_tokens": 6,  # OpenLLMetry's stream over-count
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_creation.input_tokens": 100,
    }
    body = export({OPENLLMETRY: [span(twin)], NATIVE: [span(native_attrs(**{"gen_ai.response.id": "msg_twice"}))]})
    resp = post_json(Client(), secret, body)
    assert resp.status_code == 200
    assert resp.json() == {}
    event = stored()["msg_twice"]
    assert (event.output_tokens, event.cache_write_1h_tokens) == (5, 60)
    # A later export of either span changes nothing.
    assert post_json(Client(), secret, export({OPENLLMETRY: [span(twin)]})).json() == {}
    assert Event.objects.count() == 1


def test_protobuf_gzip_bodies_get_protobuf_answers(ingest_key):
    secret, _ = ingest_key
    request = as_protobuf(
        export(
            {NATIVE: [span(native_attrs(**{"gen_ai.response.id": "msg_pb"})), span({"gen_ai.operation.name": "chat"})]}
        )
    )
    resp = post_protobuf(Client(), secret, request, gzip_body=True)
    assert resp.status_code == 200
    assert resp["Content-Type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(resp.content)
    assert answer.partial_success.rejected_spans == 1
    assert "no gen_ai.request.model" in answer.partial_success.error_message
    assert stored()["msg_pb"].cost_usd == CACHE_COST


def test_unparseable_bodies_are_400_with_a_status_in_the_same_encoding(ingest_key):
    secret, _ = ingest_key
    resp = post_protobuf(Client(), secret, b"not a protobuf")
    assert resp.status_code == 400
    assert resp["Content-Type"] == "application/x-protobuf"
    status = status_pb2.Status.FromString(resp.content)
    assert status.code == 3
    assert "protobuf" in status.message
    resp = post_json(Client(), secret, b"{not json")
    assert resp.status_code == 400
    assert resp.json()["code"] == 3
    resp = post_json(Client(), secret, {"resourceSpans": "nope"})
    assert resp.status_code == 400
    assert "OTLP/JSON" in resp.json()["message"]
    resp = post_protobuf(Client(), secret, gzip.compress(b"x")[:-4], gzip_body=False)
    assert resp.status_code == 400


def test_auth_content_type_encoding_and_size_are_checked(ingest_key, settings):
    secret, _ = ingest_key
    body = export({NATIVE: [span(native_attrs())]})
    assert post_json(Client(), None, body).status_code == 401
    assert post_json(Client(), "tly_wrong", body).status_code == 401
    resp = Client().post("/v1/traces", data=b"x", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert resp.status_code == 415
    resp = post_json(Client(), secret, body, HTTP_CONTENT_ENCODING="deflate")
    assert resp.status_code == 415
    settings.TALLY_INGEST_MAX_BODY_BYTES = 1000
    big = export({NATIVE: [span(native_attrs(**{"gen_ai.response.id": f"m{i}"})) for i in range(20)]})
    assert post_json(Client(), secret, big).status_code == 413
    assert Client().get("/v1/traces").status_code == 405


# -- real senders against the live server ---------------------------------------------------------


@pytest.fixture
def otlp_exporter(live_server, clean_events) -> Iterator[OTLPSpanExporter]:  # type: ignore[no-untyped-def]
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {secret}"},
        compression=Compression.Gzip,
        timeout=10,
    )
    yield exporter
    # Closes its kept-alive connection: the live server's handler thread (and its database
    # connection) would otherwise outlive the test.
    exporter.shutdown()


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


def provider(exporter: Any, service: str = "search-api") -> TracerProvider:
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}), shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


def test_the_opentelemetry_sdk_exporter_delivers_genai_spans(otlp_exporter):
    tracer = provider(otlp_exporter).get_tracer("my.app.llm")
    with tracer.start_as_current_span("chat claude-sonnet-4-6", kind=SpanKind.CLIENT) as current:
        for key, value in native_attrs(**{"gen_ai.response.id": "msg_sdk"}).items():
            current.set_attribute(key, value)
        current.set_attribute("gen_ai.response.finish_reasons", ["end_turn"])
        current.set_attribute("tally.feature", "search")
    with tracer.start_as_current_span("GET /healthz"):
        pass
    event = stored()["msg_sdk"]
    assert (event.service, event.feature, event.input_tokens, event.cost_usd) == (
        "search-api",
        "search",
        12,
        CACHE_COST,
    )
    assert Event.objects.count() == 1


def test_the_anthropic_sdks_native_spans_arrive_as_events(otlp_exporter, fake_anthropic):
    tracer_provider = provider(otlp_exporter)
    client = anthropic.Anthropic(
        api_key="sk-test",
        base_url=fake_anthropic.url,
        max_retries=1,
        open_telemetry={"tracer_provider": tracer_provider},
    )
    message = client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "cache"}])
    stream = client.messages.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hello"}], stream=True
    )
    for _ in stream:
        pass
    with pytest.raises(anthropic.OverloadedError) as raised:
        client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "fail:529:9"}])
    events = stored()
    plain = events[message.id]
    assert (plain.input_tokens, plain.cache_write_5m_tokens, plain.cache_write_1h_tokens) == (12, 40, 60)
    assert plain.cost_usd == CACHE_COST
    assert plain.metadata["anthropic_request_id"] == message._request_id
    streamed = next(e for e in events.values() if e.time_to_first_token_ms is not None)
    assert (streamed.input_tokens, streamed.output_tokens, streamed.cost_usd) == (12, 5, PLAIN_COST)
    error = events[raised.value.request_id]
    assert (error.status, error.error_type, error.http_status) == ("error", "overloaded_error", 529)
    assert len(events) == 3


def test_openllmetry_and_native_spans_of_one_call_count_once(otlp_exporter, fake_anthropic, monkeypatch):
    try:
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
    except ImportError:  # pragma: no cover - it installs from PyPI today (0.62.4)
        pytest.skip("opentelemetry-instrumentation-anthropic is not installed")
    monkeypatch.setenv("TRACELOOP_TRACE_CONTENT", "false")
    memory = InMemorySpanExporter()
    tracer_provider = provider(memory)
    instrumentor = AnthropicInstrumentor()
    # OpenLLMetry patches the SDK's classes process-wide: undone below whatever happens.
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        client = anthropic.Anthropic(
            api_key="sk-test", base_url=fake_anthropic.url, open_telemetry={"tracer_provider": tracer_provider}
        )
        message = client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "cache"}])
        stream = client.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        for _ in stream:
            pass
    finally:
        instrumentor.uninstrument()
    spans = memory.get_finished_spans()
    scopes = sorted(s.instrumentation_scope.name for s in spans if s.status.status_code != StatusCode.ERROR)
    assert scopes == [NATIVE, NATIVE, OPENLLMETRY, OPENLLMETRY]  # two spans per call
    assert otlp_exporter.export(spans) == SpanExportResult.SUCCESS  # one real OTLP/protobuf export
    events = stored()
    assert len(events) == 2
    assert events[message.id].cost_usd == CACHE_COST
    streamed = next(e for rid, e in events.items() if rid != message.id)
    assert streamed.output_tokens == 5  # the native span's count, not OpenLLMetry's over-count (6)


def test_an_otlp_json_export_over_http_is_answered_in_json(live_server, clean_events):
    import httpx

    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    body = export(
        {
            NATIVE: [
                span(native_attrs(**{"gen_ai.response.id": "msg_json_live"})),
                span({"gen_ai.operation.name": "chat"}),
            ]
        }
    )
    resp = httpx.post(
        f"{live_server.url}/v1/traces",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert stored()["msg_json_live"].cost_usd == CACHE_COST
