"""End to end: the REAL anthropic SDK -> fake Anthropic API on loopback -> tally_client ->
a REAL Tally server (live_server) -> `ingest_event` rows with the server's own price."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anthropic
import httpx2
import pytest

from tests.sdk.conftest import MODEL, events_by_request_id, expected_cost, user

PLAIN_COST = expected_cost(input=12, output=5)
CACHE_COST = expected_cost(input=12, output=5, read=2000, w5m=40, w1h=60)


@pytest.fixture
def tally(make_tally):  # type: ignore[no-untyped-def]
    return make_tally()


@pytest.fixture
def client(tally, fake_anthropic):  # type: ignore[no-untyped-def]
    return tally.instrument(anthropic.Anthropic(api_key="sk-test", base_url=fake_anthropic.url, max_retries=2))


@pytest.fixture
def aclient(tally, fake_anthropic):  # type: ignore[no-untyped-def]
    return tally.instrument(anthropic.AsyncAnthropic(api_key="sk-test", base_url=fake_anthropic.url, max_retries=2))


def delivered(tally) -> dict:  # type: ignore[no-untyped-def]
    assert tally.flush(timeout=10), tally.stats()
    return events_by_request_id()


def test_plain_create_arrives_with_usage_cost_and_request_id(tally, client):
    message = client.messages.create(model=MODEL, max_tokens=100, messages=user("hello"))
    events = delivered(tally)
    assert list(events) == [message._request_id]
    event = events[message._request_id]
    assert (event.model, event.status, event.stop_reason, event.service_tier, event.service) == (
        MODEL,
        "ok",
        "end_turn",
        "standard",
        "api",
    )
    assert (event.input_tokens, event.output_tokens, event.cache_read_input_tokens) == (12, 5, 0)
    assert event.batch is False
    assert event.cost_usd == PLAIN_COST == Decimal("0.000111")
    assert 0 < event.latency_ms < 5000
    assert event.time_to_first_token_ms is None
    assert tally.stats()["sent"] == 1


def test_cache_reads_and_5m_1h_writes_are_priced_apart(tally, client):
    message = client.messages.create(model=MODEL, max_tokens=100, messages=user("cache"))
    event = delivered(tally)[message._request_id]
    assert (event.input_tokens, event.cache_read_input_tokens, event.cache_creation_input_tokens) == (12, 2000, 100)
    assert (event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (40, 60)
    # 12*3 + 2000*0.30 + 40*3.75 + 60*6 + 5*15 = 1221 USD per million tokens
    assert event.cost_usd == CACHE_COST == Decimal("0.001221")


def test_tool_use_records_its_stop_reason(tally, client):
    message = client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user("tool"),
        tools=[{"name": "search", "input_schema": {"type": "object"}}],
    )
    assert message.stop_reason == "tool_use"
    assert delivered(tally)[message._request_id].stop_reason == "tool_use"


def test_create_with_stream_true_records_final_usage_and_time_to_first_token(tally, client):
    stream = client.messages.create(model=MODEL, max_tokens=100, messages=user("cache"), stream=True)
    assert isinstance(stream, anthropic.Stream)  # the caller still gets the SDK's own Stream
    kinds = [event.type for event in stream]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    request_id = stream.response.headers["request-id"]
    event = delivered(tally)[request_id]
    # output_tokens from message_delta (5), not message_start's placeholder (1); the TTL split from message_start.
    assert (event.input_tokens, event.output_tokens, event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (
        12,
        5,
        40,
        60,
    )
    assert event.stop_reason == "end_turn"
    assert event.cost_usd == CACHE_COST
    assert 0 < event.time_to_first_token_ms <= event.latency_ms


def test_stream_helper_records_one_event(tally, client, fake_anthropic):
    with client.messages.stream(model=MODEL, max_tokens=100, messages=user("tool")) as stream:
        text_chunks = list(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.request_id
    assert text_chunks == []
    assert final.stop_reason == "tool_use"
    events = delivered(tally)
    assert list(events) == [request_id]
    event = events[request_id]
    assert (event.output_tokens, event.stop_reason, event.status) == (5, "tool_use", "ok")
    assert event.time_to_first_token_ms is not None
    assert event.cost_usd == PLAIN_COST


def test_stream_abandoned_half_way_still_records_the_call(tally, client):
    with client.messages.stream(model=MODEL, max_tokens=100, messages=user("hello")) as stream:
        next(iter(stream))  # message_start only, then leave
        request_id = stream.request_id
    event = delivered(tally)[request_id]
    assert (event.status, event.input_tokens, event.stop_reason) == ("ok", 12, "")


def test_error_event_inside_a_stream_is_an_error_with_the_usage_seen(tally, client):
    with client.messages.stream(model=MODEL, max_tokens=100, messages=user("stream-error")) as stream:
        request_id = stream.request_id
        with pytest.raises(anthropic.APIStatusError) as raised:
            stream.until_done()
    assert raised.value.type == "overloaded_error"
    event = delivered(tally)[request_id]
    assert (event.status, event.error_type, event.http_status, event.input_tokens) == (
        "error",
        "overloaded_error",
        None,
        12,
    )


def test_429_retried_by_the_sdk_is_one_ok_event_with_the_final_request_id(tally, client, fake_anthropic):
    message = client.messages.create(model=MODEL, max_tokens=100, messages=user("fail:429:2"))
    last = [r[3] for r in fake_anthropic.requests].index(message._request_id)
    attempts = fake_anthropic.requests[last - 2 : last + 1]
    assert [a[2] for a in attempts] == [0, 1, 2]  # the SDK made three attempts
    events = delivered(tally)
    assert list(events) == [message._request_id]
    assert events[message._request_id].status == "ok"
    assert events[message._request_id].cost_usd == PLAIN_COST


def test_529_after_all_retries_is_one_error_event_and_the_exception_is_the_sdks(tally, client):
    with pytest.raises(anthropic.OverloadedError) as raised:
        client.messages.create(model=MODEL, max_tokens=100, messages=user("fail:529:99"))
    assert raised.value.status_code == 529
    events = delivered(tally)
    assert list(events) == [raised.value.request_id]  # the last attempt's request-id
    event = events[raised.value.request_id]
    assert (event.status, event.error_type, event.http_status, event.model) == ("error", "overloaded_error", 529, MODEL)
    assert (event.input_tokens, event.output_tokens) == (0, 0)
    assert event.cost_usd == 0


def test_timeout_is_one_error_event_with_a_generated_request_id(tally, client):
    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.15, max_retries=1).messages.create(
            model=MODEL, max_tokens=100, messages=user("slow:0.4")
        )
    events = delivered(tally)
    assert len(events) == 1
    ((request_id, event),) = events.items()
    assert request_id.startswith("tally_")
    assert (event.status, event.error_type, event.http_status) == ("error", "timeout", None)
    assert event.latency_ms >= 300  # both attempts and the SDK's backoff


def test_batch_results_are_priced_at_the_batch_discount(tally, client, fake_anthropic):
    requests = [
        {"custom_id": f"row-{i}", "params": {"model": MODEL, "max_tokens": 50, "messages": user(text)}}
        for i, text in enumerate(["cache", "hello", "batch-error"])
    ]
    batch = client.messages.batches.create(requests=requests)
    assert client.messages.batches.retrieve(batch.id).processing_status == "ended"
    results = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
    assert results == {"row-0": "succeeded", "row-1": "succeeded", "row-2": "errored"}
    events = delivered(tally)
    assert set(events) == {f"{batch.id}:row-0", f"{batch.id}:row-1", f"{batch.id}:row-2"}
    cached, plain, errored = (events[f"{batch.id}:row-{i}"] for i in range(3))
    assert cached.batch
    assert plain.batch
    assert errored.batch
    assert cached.cost_usd == expected_cost(input=12, output=5, read=2000, w5m=40, w1h=60, batch=True)
    assert cached.cost_usd == Decimal("0.0006105")
    assert plain.cost_usd == PLAIN_COST / 2
    assert (errored.status, errored.error_type, errored.cost_usd) == ("error", "invalid_request_error", 0)
    assert cached.timestamp == batch.created_at  # dated when the batch was created
    assert cached.metadata == {"batch_id": batch.id}
    # Reading the results again changes nothing (stable request ids).
    list(client.messages.batches.results(batch.id))
    assert tally.flush(10)
    assert len(events_by_request_id()) == 3
    assert tally.stats()["duplicates"] == 3


def test_async_client_create_stream_helper_and_batches(tally, aclient):
    async def calls() -> list[str]:
        message = await aclient.messages.create(model=MODEL, max_tokens=100, messages=user("cache"))
        stream = await aclient.messages.create(model=MODEL, max_tokens=100, messages=user("hello"), stream=True)
        async for _ in stream:
            pass
        async with aclient.messages.stream(model=MODEL, max_tokens=100, messages=user("tool")) as helper:
            await helper.get_final_message()
        try:
            await aclient.with_options(max_retries=0).messages.create(
                model=MODEL, max_tokens=100, messages=user("fail:529:1")
            )
        except anthropic.OverloadedError as exc:
            error_id = exc.request_id
        batch = await aclient.messages.batches.create(
            requests=[{"custom_id": "a", "params": {"model": MODEL, "max_tokens": 5, "messages": user("hello")}}]
        )
        async for _ in await aclient.messages.batches.results(batch.id):
            pass
        return [
            message._request_id,
            stream.response.headers["request-id"],
            helper.request_id,
            error_id,
            f"{batch.id}:a",
        ]

    ids = asyncio.run(calls())
    events = delivered(tally)
    assert sorted(events) == sorted(ids)
    cached, streamed, helper, error, batched = (events[i] for i in ids)
    assert cached.cost_usd == CACHE_COST
    assert streamed.time_to_first_token_ms is not None
    assert streamed.output_tokens == 5
    assert helper.stop_reason == "tool_use"
    assert (error.status, error.error_type, error.http_status) == ("error", "overloaded_error", 529)
    assert batched.batch
    assert batched.cost_usd == PLAIN_COST / 2


def test_context_tags_feature_user_and_metadata_per_thread_and_per_task(tally, client, aclient):
    ids: dict[str, str] = {}

    def in_thread(name: str) -> None:
        with tally.context(feature=f"feature-{name}", user_id=f"user-{name}", metadata={"thread": name}):
            ids[name] = client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))._request_id

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in ("a", "b")]
    with tally.context(feature="outer"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids["outer"] = client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))._request_id

    async def task(name: str) -> None:
        with tally.context(feature=f"task-{name}", service="worker"):
            await asyncio.sleep(0.01)  # interleave the two tasks
            ids[name] = (await aclient.messages.create(model=MODEL, max_tokens=10, messages=user("hi")))._request_id

    async def both() -> None:
        await asyncio.gather(task("x"), task("y"))

    asyncio.run(both())
    ids["none"] = client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))._request_id
    events = delivered(tally)
    tags = {
        name: (events[rid].feature, events[rid].user_id, events[rid].service, events[rid].metadata)
        for name, rid in ids.items()
    }
    assert tags == {
        "a": ("feature-a", "user-a", "api", {"thread": "a"}),
        "b": ("feature-b", "user-b", "api", {"thread": "b"}),
        "outer": ("outer", "", "api", None),
        "x": ("task-x", "", "worker", None),
        "y": ("task-y", "", "worker", None),
        "none": ("", "", "api", None),
    }


def test_user_ids_can_be_sent_as_hmac_hashes(make_tally, fake_anthropic):
    tally = make_tally(user_id_hmac_key="pepper")
    client = tally.instrument(anthropic.Anthropic(api_key="sk-test", base_url=fake_anthropic.url))
    with tally.context(user_id="alice@example.com"):
        rid = client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))._request_id
    stored = delivered(tally)[rid].user_id
    assert stored == hmac.new(b"pepper", b"alice@example.com", hashlib.sha256).hexdigest()


def test_only_the_instrumented_instance_changes(tally, client, fake_anthropic):
    plain = anthropic.Anthropic(api_key="sk-test", base_url=fake_anthropic.url)
    plain.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
    assert type(plain.messages) is anthropic.resources.messages.Messages  # no class was patched
    # Copies made by with_options() are instrumented too.
    rid = client.with_options(timeout=30).messages.create(model=MODEL, max_tokens=10, messages=user("hi"))._request_id
    raw = client.with_raw_response.messages.create(model=MODEL, max_tokens=10, messages=user("hi"))
    assert raw.parse().usage.output_tokens == 5
    assert tally.instrument(client) is client  # idempotent
    assert set(delivered(tally)) == {rid, raw.request_id}


def test_record_sends_calls_made_another_way(tally):
    with tally.context(feature="export"):
        tally.record(
            request_id="manual-1",
            model=MODEL,
            latency_ms=321.5,
            input_tokens=1000,
            output_tokens=100,
            stop_reason="end_turn",
            prompt="never sent",
        )  # unknown fields are dropped, not sent
    event = delivered(tally)["manual-1"]
    assert (event.feature, event.latency_ms, event.input_tokens) == ("export", 321.5, 1000)
    assert event.cost_usd == expected_cost(input=1000, output=100)


def test_the_callers_exception_is_the_very_object_the_sdk_raised(collector):
    from tally_client import Tally

    tally = Tally(collector.url, "k", flush_interval=0.01)
    client = tally.instrument(anthropic.Anthropic(api_key="sk-test", base_url="http://127.0.0.1:9", max_retries=0))
    error = anthropic.APIConnectionError(request=httpx2.Request("POST", "http://127.0.0.1:9/v1/messages"))

    class FailingMessages:
        def create(self, **kwargs: object) -> None:
            raise error

    client.messages._inner = FailingMessages()
    with pytest.raises(anthropic.APIConnectionError) as raised:
        client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
    assert raised.value is error
    assert tally.flush(5)
    (event,) = collector.events()
    assert (event["status"], event["error_type"], event["model"]) == ("error", "connection_error", MODEL)
    assert event["request_id"].startswith("tally_")
    tally.close(0)


def test_a_failing_telemetry_hook_never_breaks_the_call(collector, fake_anthropic, monkeypatch, caplog):
    from tally_client import Tally

    tally = Tally(collector.url, "k")
    client = tally.instrument(anthropic.Anthropic(api_key="sk-test", base_url=fake_anthropic.url))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("telemetry bug")

    monkeypatch.setattr(tally, "_emit", broken)
    message = client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
    assert message.usage.output_tokens == 5
    chunks = list(client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"), stream=True))
    assert chunks[-1].type == "message_stop"
    with client.messages.stream(model=MODEL, max_tokens=10, messages=user("hello")) as stream:
        assert stream.get_final_text() == "Hello from the fake."
    assert "instrumentation error (call unaffected)" in caplog.text
    tally.close(0)


# --- rate-limit headers -------------------------------------------------------------------------


def _limits(requests: tuple[int, int], input_tokens: tuple[int, int], output_tokens: tuple[int, int]) -> dict[str, str]:
    """The fake's anthropic-ratelimit-* headers for (remaining, limit) pairs; `tokens` is input + output."""
    headers: dict[str, str] = {}
    tokens = (input_tokens[0] + output_tokens[0], input_tokens[1] + output_tokens[1])
    for kind, (remaining, limit) in (
        ("requests", requests),
        ("tokens", tokens),
        ("input-tokens", input_tokens),
        ("output-tokens", output_tokens),
    ):
        headers[f"{kind}-limit"], headers[f"{kind}-remaining"] = str(limit), str(remaining)
    return headers


def _stored_limits(event) -> tuple[int | None, ...]:  # type: ignore[no-untyped-def]
    return tuple(
        getattr(event, f"ratelimit_{kind}_{which}")
        for kind in ("requests", "tokens", "input_tokens", "output_tokens")
        for which in ("limit", "remaining")
    )


def test_ratelimit_headers_of_every_call_reach_the_events_and_the_metrics_headroom(
    tally, client, aclient, fake_anthropic
):
    from django.test import Client

    from projects.models import IngestKey
    from projects.services import ingest_key_create
    from rollups.services import rollup_until_current

    calls = {
        "plain": _limits((45, 50), (36_000, 40_000), (7_200, 8_000)),  # 0.9 / 0.9 / 0.9
        "stream": _limits((20, 50), (10_000, 40_000), (6_000, 8_000)),  # 0.4 / 0.25 / 0.75
        "helper": _limits((40, 50), (30_000, 40_000), (1_000, 8_000)),  # 0.8 / 0.75 / 0.125
        "429": _limits((0, 50), (40_000, 40_000), (8_000, 8_000)),  # 0 / 1 / 1
        "async": _limits((49, 50), (20_000, 40_000), (4_000, 8_000)),  # 0.98 / 0.5 / 0.5
    }
    ids: dict[str, str] = {}
    try:
        fake_anthropic.ratelimit = calls["plain"]
        plain = client.messages.create(
            model=MODEL, max_tokens=100, messages=user("hello"), extra_headers={"x-app": "1"}
        )
        assert type(plain) is anthropic.types.Message  # read through the raw response, handed over parsed
        ids["plain"] = plain._request_id
        fake_anthropic.ratelimit = calls["stream"]
        stream = client.messages.create(model=MODEL, max_tokens=100, messages=user("hello"), stream=True)
        list(stream)
        ids["stream"] = stream.response.headers["request-id"]
        fake_anthropic.ratelimit = calls["helper"]
        with client.messages.stream(model=MODEL, max_tokens=100, messages=user("hello")) as helper:
            helper.until_done()
            ids["helper"] = helper.request_id
        fake_anthropic.ratelimit = calls["429"]
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.with_options(max_retries=0).messages.create(model=MODEL, max_tokens=100, messages=user("fail:429:1"))
        ids["429"] = raised.value.request_id
        fake_anthropic.ratelimit = calls["async"]

        async def one() -> str:
            return (await aclient.messages.create(model=MODEL, max_tokens=100, messages=user("hello")))._request_id

        ids["async"] = asyncio.run(one())
    finally:
        fake_anthropic.ratelimit = None
    events = delivered(tally)
    assert sorted(events) == sorted(ids.values())
    for name, headers in calls.items():
        want = tuple(
            int(headers[f"{kind}-{which}"])
            for kind in ("requests", "tokens", "input-tokens", "output-tokens")
            for which in ("limit", "remaining")
        )
        assert _stored_limits(events[ids[name]]) == want, name
    assert (events[ids["429"]].status, events[ids["429"]].http_status) == ("error", 429)

    rollup_until_current()
    read = ingest_key_create(project_slug="acme", environment_name="prod", scope=IngestKey.Scope.READ).secret
    now = datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0)
    window = {
        "granularity": "hour",
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(hours=2)).isoformat(),
    }
    totals = Client().get("/api/v1/metrics", window, HTTP_AUTHORIZATION=f"Bearer {read}").json()["totals"]
    assert totals["requests"] == 5
    assert totals["rate_limited_requests"] == 1
    # The lowest remaining/limit sent: requests 0/50, input 10000/40000, output 1000/8000.
    assert (
        totals["ratelimit_requests_headroom_min"],
        totals["ratelimit_input_tokens_headroom_min"],
        totals["ratelimit_output_tokens_headroom_min"],
    ) == (0.0, 0.25, 0.125)
