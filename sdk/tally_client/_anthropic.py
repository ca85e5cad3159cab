"""Per-instance instrumentation of `anthropic.Anthropic` and `anthropic.AsyncAnthropic`.

Why this shape (tech-facts §1.8): the SDK's middleware runs once per HTTP *attempt* and sees
no usage for streams; OpenTelemetry needs a tracer provider; patching `Messages.create` on the
class (as OpenLLMetry and OpenLIT do) changes every client in the process. Here only the
instrumented instance changes: its `messages` attribute (a `cached_property`, so it lives in
the instance `__dict__`) is replaced by a proxy that wraps `create`, `parse`, `stream` and
`batches`, and forwards everything else untouched. One SDK call is one event, however many
HTTP attempts the SDK's own retries make.

Streams are observed without wrapping them in a foreign object: the very `Stream` the SDK
returned gets, for this instance only, a subclass of its own class whose `__iter__`/`__next__`/
`close` note each event before passing it on. `isinstance` checks, attributes and every
helper (`text_stream`, `get_final_message`, ...) keep working.

Invariants:
- The application gets exactly what the SDK returned or raised (the same exception object).
- No instrumentation error reaches the application: every hook is guarded by `_safe`.
- The one exception an instrumented call can add is `BudgetExceeded` (opt-in, `enforce_budgets`),
  raised in `_Call.__init__` (and in `messages.stream()`, `batches.create`) before the request:
  nothing is sent, nothing is recorded.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

import anthropic
from anthropic import AsyncStream, Stream
from anthropic._constants import RAW_RESPONSE_HEADER
from anthropic._decoders.jsonl import AsyncJSONLDecoder, JSONLDecoder
from anthropic.resources.messages import AsyncMessagesWithRawResponse, MessagesWithRawResponse

from tally_client import _context
from tally_client._events import error_fields, message_into, new_request_id, ratelimit_into, usage_into

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "_tally_instrumented"
_CALL = "_tally_call"


def _safe(method: F) -> F:
    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            with contextlib.suppress(Exception):  # never let telemetry break the call
                self.tally._warn.warning("hook", "tally_client: instrumentation error (call unaffected)", exc_info=True)
            return None

    return cast(F, guarded)


def instrument(tally: Any, client: Any) -> Any:
    if client.__dict__.get(_MARK) is tally:
        return client
    if isinstance(client, anthropic.AsyncAnthropic):
        proxy: Any = _AsyncMessages(client.messages, tally)
    elif isinstance(client, anthropic.Anthropic):
        proxy = _Messages(client.messages, tally)
    else:
        raise TypeError(f"Tally.instrument() takes an anthropic.Anthropic or AsyncAnthropic, not {type(client)!r}")
    original_copy = client.copy

    def copy(*args: Any, **kwargs: Any) -> Any:
        # with_options()/with_middleware() build a new client: instrument it too.
        return instrument(tally, original_copy(*args, **kwargs))

    client.__dict__.update({"messages": proxy, "copy": copy, "with_options": copy, _MARK: tally})
    return client


# -- one call ------------------------------------------------------------------------------


class _Call:
    """What one SDK call becomes: an event, emitted once (success, error or stream end)."""

    __slots__ = ("tally", "ctx", "start", "event", "first_token", "done")

    def __init__(self, tally: Any, model: Any, *, check: bool = True) -> None:
        self.tally = tally
        self.done = False
        self.first_token: float | None = None
        self.ctx = ctx = _context.current()
        if check:
            guard = tally._guard
            if guard is not None:
                guard.check(ctx)  # BudgetExceeded, before the request; reads a cached status only
        self.event: dict[str, Any] = {"model": model if isinstance(model, str) else None, "timestamp": time.time()}
        self.start = time.perf_counter()

    def _latency(self) -> None:
        now = time.perf_counter()
        self.event["latency_ms"] = (now - self.start) * 1000.0
        if self.first_token is not None:
            self.event["time_to_first_token_ms"] = (self.first_token - self.start) * 1000.0

    def _emit(self) -> None:
        if self.done:
            return
        self.done = True
        if not self.event.get("model"):
            self.event["model"] = "unknown"
        self.tally._emit(self.event, self.ctx)

    @_safe
    def message(self, message: Any, request_id: str | None = None) -> None:
        self._latency()
        message_into(self.event, message)
        self.event["request_id"] = request_id or getattr(message, "_request_id", None) or new_request_id()
        self._emit()

    @_safe
    def error(self, exc: BaseException, *, in_stream: bool = False) -> None:
        if self.done:
            return
        fields = error_fields(exc, anthropic)
        if isinstance(exc, anthropic.APIStatusError):  # a 429 says how far over the limit it is, too
            ratelimit_into(self.event, getattr(exc.response, "headers", None))
        if fields is None:
            if not in_stream:
                return  # not an API call that failed (e.g. a TypeError from bad arguments)
            # Mid-stream, the HTTP client's own errors can surface unwrapped (a read timeout, a reset).
            name = type(exc).__name__
            error_type = (
                "timeout"
                if isinstance(exc, TimeoutError) or "Timeout" in name
                else "connection_error"
                if isinstance(exc, OSError) or type(exc).__module__.startswith("httpx")
                else "client_error"
            )
            fields = {"status": "error", "error_type": error_type}
        self._latency()
        if in_stream and self.event.get("request_id"):
            fields.pop("request_id", None)
        self.event.update(fields)
        self.event.setdefault("request_id", new_request_id())
        self._emit()

    @_safe
    def begin_stream(self, request_id: str | None, headers: Any = None) -> None:
        self.event["request_id"] = request_id or new_request_id()
        ratelimit_into(self.event, headers)

    @_safe
    def headers(self, headers: Any) -> None:
        ratelimit_into(self.event, headers)

    def item(self, item: Any) -> None:
        # The hot path of a stream (once per event): guarded inline rather than through `_safe`.
        try:
            kind = item.type
            if kind == "content_block_delta":
                if self.first_token is None:
                    self.first_token = time.perf_counter()
            elif kind == "message_start":
                message_into(self.event, item.message)
            elif kind == "message_delta":
                usage_into(self.event, getattr(item, "usage", None))
                stop = getattr(getattr(item, "delta", None), "stop_reason", None)
                if stop:
                    self.event["stop_reason"] = stop
            elif kind == "message_stop":
                self.end()
        except Exception:
            with contextlib.suppress(Exception):
                self.tally._warn.warning("hook", "tally_client: instrumentation error (call unaffected)", exc_info=True)

    def stream_stopped(self, exc: BaseException) -> None:
        """A stream's `__next__`/`__anext__` raised: its end ends the call, an error fails it."""
        if isinstance(exc, StopIteration | StopAsyncIteration):
            self.end()
        elif isinstance(exc, Exception):
            self.error(exc, in_stream=True)

    @_safe
    def end(self) -> None:
        if not self.done:
            self._latency()
            self._emit()

    @_safe
    def result(self, result: Any, *, stream: bool) -> Any:
        """Observe what create()/parse() returned (sync)."""
        if isinstance(result, Stream):
            _observe(
                result, self, request_id=result.response.headers.get("request-id"), headers=result.response.headers
            )
        elif isinstance(result, anthropic.APIResponse):  # client.with_raw_response.messages.create
            if stream:
                self.done = True  # a raw stream's body is the caller's to read: not observed
            else:
                ratelimit_into(self.event, result.headers)
                self.message(result.parse(), result.request_id)
        else:
            self.message(result)
        return None

    async def aresult(self, result: Any, *, stream: bool) -> None:
        """Observe what create()/parse() returned (async)."""
        try:
            if isinstance(result, anthropic.AsyncAPIResponse) and not stream:
                ratelimit_into(self.event, result.headers)
                self.message(await result.parse(), result.request_id)  # parse() is cached for the caller
                return
        except Exception:
            self.tally._warn.warning("hook", "tally_client: instrumentation error (call unaffected)", exc_info=True)
            return
        if isinstance(result, AsyncStream):
            _observe(
                result, self, request_id=result.response.headers.get("request-id"), headers=result.response.headers
            )
        elif isinstance(result, anthropic.AsyncAPIResponse):
            self.done = True
        else:
            self.message(result)


def _check_budgets(tally: Any) -> None:
    guard = tally._guard
    if guard is not None:
        guard.check(_context.current())


@contextlib.contextmanager
def _errors_reported(call: _Call) -> Iterator[None]:
    """Around the SDK's request, sync or awaited: what it raises becomes the call's error event, and
    the very same exception goes on to the application."""
    try:
        yield
    except Exception as exc:
        call.error(exc)
        raise


@contextlib.contextmanager
def _stream_reported(call: _Call) -> Iterator[None]:
    """Around the iteration of a stream, sync or async: the call ends when the stream does or is
    abandoned half-way (with what was seen so far), and fails when the stream raises."""
    try:
        yield
    except GeneratorExit:
        call.end()
        raise
    except Exception as exc:
        call.error(exc, in_stream=True)
        raise
    call.end()


# -- streams and batch results: per-instance subclasses --------------------------------------
# The methods below are copied onto a subclass of the observed object's own class (see
# `_observed_class`); `self._tally_base` is that original class.


class _ObservedStream:
    _tally_base: Any  # the observed object's own class, set by _observed_class

    def __iter__(self) -> Any:
        call = self.__dict__[_CALL]
        seen = call.item
        with _stream_reported(call):
            for item in self._tally_base.__iter__(self):
                # Most events of a long stream are deltas after the first: skip the call for them.
                if call.first_token is None or getattr(item, "type", None) != "content_block_delta":
                    seen(item)
                yield item

    def __next__(self) -> Any:
        call = self.__dict__[_CALL]
        try:
            item = self._tally_base.__next__(self)
        except BaseException as exc:
            call.stream_stopped(exc)
            raise
        call.item(item)
        return item

    def close(self) -> None:
        try:
            self._tally_base.close(self)
        finally:
            self.__dict__[_CALL].end()


class _ObservedAsyncStream:
    _tally_base: Any  # the observed object's own class, set by _observed_class

    async def __aiter__(self) -> Any:
        call = self.__dict__[_CALL]
        seen = call.item
        with _stream_reported(call):
            async for item in self._tally_base.__aiter__(self):
                if call.first_token is None or getattr(item, "type", None) != "content_block_delta":
                    seen(item)
                yield item

    async def __anext__(self) -> Any:
        call = self.__dict__[_CALL]
        try:
            item = await self._tally_base.__anext__(self)
        except BaseException as exc:
            call.stream_stopped(exc)
            raise
        call.item(item)
        return item

    async def close(self) -> None:
        try:
            await self._tally_base.close(self)
        finally:
            self.__dict__[_CALL].end()


class _ObservedResults:
    _tally_base: Any  # the observed object's own class, set by _observed_class

    def __iter__(self) -> Any:
        seen = self.__dict__[_CALL]
        for item in self._tally_base.__iter__(self):
            seen.item(item)
            yield item

    def __next__(self) -> Any:
        item = self._tally_base.__next__(self)
        self.__dict__[_CALL].item(item)
        return item


class _ObservedAsyncResults:
    _tally_base: Any  # the observed object's own class, set by _observed_class

    async def __aiter__(self) -> Any:
        seen = self.__dict__[_CALL]
        async for item in self._tally_base.__aiter__(self):
            seen.item(item)
            yield item

    async def __anext__(self) -> Any:
        item = await self._tally_base.__anext__(self)
        self.__dict__[_CALL].item(item)
        return item


@functools.cache
def _observed_class(cls: type, mixin: type) -> type:
    # A single base and no new slots, so that `obj.__class__ = ...` is allowed (same layout).
    # Hence the methods are copied in and call `_tally_base` explicitly rather than super().
    methods = {name: value for name, value in vars(mixin).items() if callable(value)}
    return type(
        f"Tally{cls.__name__}", (cls,), {**methods, "_tally_base": cls, "__module__": cls.__module__, "__slots__": ()}
    )


_MIXINS = (
    (AsyncStream, _ObservedAsyncStream),
    (Stream, _ObservedStream),
    (AsyncJSONLDecoder, _ObservedAsyncResults),
    (JSONLDecoder, _ObservedResults),
)


def _observe(obj: Any, observer: Any, *, request_id: str | None = None, headers: Any = None) -> None:
    """Give `obj` (this instance only) a subclass of its own class that reports to `observer`.
    Never raises: an object that cannot be observed is left exactly as it was."""
    try:
        if _CALL in obj.__dict__:
            return
        for base, mixin in _MIXINS:
            if isinstance(obj, base):
                own: type = type(obj)
                cls = _observed_class(own, mixin)
                if isinstance(observer, _Call):
                    observer.begin_stream(request_id, headers)
                obj.__dict__[_CALL] = observer
                obj.__class__ = cls
                return
    except Exception:
        obj.__dict__.pop(_CALL, None)
        with contextlib.suppress(Exception):
            observer.tally._warn.warning(
                "observe", "tally_client: could not observe %s (call unaffected)", type(obj).__name__, exc_info=True
            )


class _BatchResults:
    """Turns each line of a batch's results into an event (batch=True, priced at the batch rate)."""

    def __init__(self, tally: Any, batch_id: str) -> None:
        self.tally = tally
        self.batch_id = batch_id
        self.created_at, self.model = tally._batch_info(batch_id)
        self.ctx = _context.current()

    @_safe
    def item(self, line: Any) -> None:
        result = line.result
        # The API has no per-request latency or request-id for batch results: the request_id is
        # the stable "<batch id>:<custom id>" (reading results twice stores them once).
        event: dict[str, Any] = {
            "request_id": f"{self.batch_id}:{line.custom_id}",
            "batch": True,
            "latency_ms": 0.0,
            "timestamp": self.created_at,
            "metadata": {"batch_id": self.batch_id},
        }
        if result.type == "succeeded":
            message_into(event, result.message)
        elif result.type == "errored" and self.model:
            # Not billed; recorded for the error rate when the batch's model is known.
            event.update(
                model=self.model,
                status="error",
                error_type=getattr(getattr(result.error, "error", None), "type", None) or "api_error",
            )
        else:
            return  # canceled / expired never ran: nothing to count
        self.tally._emit(event, self.ctx)


# -- the proxies ---------------------------------------------------------------------------


class _Proxy:
    def __init__(self, inner: Any, tally: Any) -> None:
        self._inner = inner
        self.tally = tally

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<tally instrumented {self._inner!r}>"


def _batch_created_at(batch: Any) -> float | None:
    created = getattr(batch, "created_at", None)
    return created.timestamp() if created is not None else None


def _one_model(requests: Any) -> str | None:
    try:
        models = {r["params"]["model"] for r in requests}
    except Exception:
        return None
    return models.pop() if len(models) == 1 else None


class _Batches(_Proxy):
    @_safe
    def _seen(self, batch: Any, requests: Any = None) -> None:
        self.tally._batch_seen(batch.id, _batch_created_at(batch), _one_model(requests) if requests else None)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        _check_budgets(self.tally)
        batch = self._inner.create(*args, **kwargs)
        self._seen(batch, kwargs.get("requests"))
        return batch

    def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        batch = self._inner.retrieve(*args, **kwargs)
        self._seen(batch)
        return batch

    def results(self, message_batch_id: str, *args: Any, **kwargs: Any) -> Any:
        decoder = self._inner.results(message_batch_id, *args, **kwargs)
        self._observe_results(decoder, message_batch_id)
        return decoder

    @_safe
    def _observe_results(self, decoder: Any, batch_id: str) -> None:
        _observe(decoder, _BatchResults(self.tally, batch_id))


class _AsyncBatches(_Batches):
    async def create(self, *args: Any, **kwargs: Any) -> Any:
        _check_budgets(self.tally)
        batch = await self._inner.create(*args, **kwargs)
        self._seen(batch, kwargs.get("requests"))
        return batch

    async def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        batch = await self._inner.retrieve(*args, **kwargs)
        self._seen(batch)
        return batch

    async def results(self, message_batch_id: str, *args: Any, **kwargs: Any) -> Any:
        decoder = await self._inner.results(message_batch_id, *args, **kwargs)
        self._observe_results(decoder, message_batch_id)
        return decoder


class _StreamManager:
    """Wraps `messages.stream(...)`'s manager: the request is made in `__enter__`."""

    def __init__(self, manager: Any, tally: Any, model: Any) -> None:
        self._manager = manager
        self._tally = tally
        self._model = model

    def __enter__(self) -> Any:
        call = _Call(self._tally, self._model, check=False)  # checked by messages.stream()
        with _errors_reported(call):
            stream = self._manager.__enter__()
        return _stream_observed(stream, call)

    def __exit__(self, *exc_info: Any) -> Any:
        return self._manager.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        call = _Call(self._tally, self._model, check=False)  # checked by messages.stream()
        with _errors_reported(call):
            stream = await self._manager.__aenter__()
        return _stream_observed(stream, call)

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._manager.__aexit__(*exc_info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


def _stream_observed(stream: Any, call: _Call) -> Any:
    """The `MessageStream` a stream manager entered, its raw SDK stream observed for `call`."""
    raw = getattr(stream, "_raw_stream", None)
    if raw is not None:
        _observe(raw, call, request_id=stream.request_id, headers=_response_headers(raw))
    return stream


def _response_headers(stream: Any) -> Any:
    response = getattr(stream, "response", None)
    return getattr(response, "headers", None)


def _raw(kwargs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the kwargs to call the SDK with, whether we asked for the raw response ourselves).

    A plain Message carries no response headers, so a non-streamed call that the application did
    not ask raw is made raw here (the SDK's own `with_raw_response` does just this) to read the
    `anthropic-ratelimit-*` headers; the application still gets `parse()`'s Message, which is what
    the SDK itself returns from a non-raw call."""
    headers = kwargs.get("extra_headers")
    if kwargs.get("stream"):
        return kwargs, False
    if not isinstance(headers, Mapping):
        if headers:  # not a mapping, yet given: leave the call exactly as the application made it
            return kwargs, False
        headers = {}  # None, NOT_GIVEN or omit
    if any(str(name).lower() == RAW_RESPONSE_HEADER.lower() for name in headers):
        return kwargs, False  # the application asked for the raw response itself
    return {**kwargs, "extra_headers": {**headers, RAW_RESPONSE_HEADER: "raw"}}, True


class _Messages(_Proxy):
    # What `batches` and `with_raw_response` wrap in; _AsyncMessages names the async ones.
    _batches_proxy: type[_Batches] = _Batches
    _raw_response_wrapper: type[Any] = MessagesWithRawResponse

    @functools.cached_property
    def batches(self) -> Any:
        return self._batches_proxy(self._inner.batches, self.tally)

    @functools.cached_property
    def with_raw_response(self) -> Any:
        # The SDK's wrapper only reads the methods off what it wraps, which a proxy has.
        return self._raw_response_wrapper(self)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._inner.create, args, kwargs)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._inner.parse, args, kwargs)

    def _call(self, method: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        call = _Call(self.tally, kwargs.get("model"))
        sent, made_raw = _raw(kwargs)
        with _errors_reported(call):
            result = method(*args, **sent)
        if made_raw and isinstance(result, anthropic.APIResponse):
            message = result.parse()  # as the SDK would have; cached, so the hook below reads the same
            call.result(result, stream=False)
            return message
        call.result(result, stream=bool(kwargs.get("stream")))
        return result

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        # Checked here rather than when the manager is entered: the async SDK has already
        # created the request's coroutine by then, and refusing it would leave it never awaited.
        _check_budgets(self.tally)
        return _StreamManager(self._inner.stream(*args, **kwargs), self.tally, kwargs.get("model"))


class _AsyncMessages(_Messages):
    _batches_proxy = _AsyncBatches
    _raw_response_wrapper = AsyncMessagesWithRawResponse

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        return await self._acall(self._inner.create, args, kwargs)

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        return await self._acall(self._inner.parse, args, kwargs)

    async def _acall(self, method: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        call = _Call(self.tally, kwargs.get("model"))
        sent, made_raw = _raw(kwargs)
        with _errors_reported(call):
            result = await method(*args, **sent)
        if made_raw and isinstance(result, anthropic.AsyncAPIResponse):
            message = await result.parse()  # as the SDK would have; cached for the hook below
            await call.aresult(result, stream=False)
            return message
        await call.aresult(result, stream=bool(kwargs.get("stream")))
        return result
