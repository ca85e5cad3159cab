"""The budget guard (`Tally(..., enforce_budgets=True)`), end to end: the REAL anthropic SDK ->
fake Anthropic API, tally_client -> a REAL Tally (live_server): spend is ingested, rolled up,
`GET /api/v1/budgets/status` says `exceeded`, and the next call raises BudgetExceeded without
any request reaching the (fake) API. Tally down or failing: nothing is ever blocked."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import logging
import os
import socket
import statistics
import threading
import time
import timeit
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest
from tally_client import BudgetExceeded, Tally
from tally_client._events import to_wire, wire_user_id
from tally_client.budget import verdicts_from

from tests.sdk.conftest import MODEL, closed_port, events_by_request_id, user, wait_for

INTERVAL = 0.05
BIG_COST = 1.05  # the fake's `big` answer on claude-sonnet-4-6: 100k input + 50k output tokens


def budget(name: str, *, limit: str = "1", period: str = "day", **scope: str) -> Any:
    from alerts.models import Budget
    from projects.models import Project

    return Budget.objects.create(
        project=Project.objects.get(slug="acme"), name=name, period=period, limit_usd=Decimal(limit), **scope
    )


def instrumented(tally: Tally, fake: Any, *, asynchronous: bool = False) -> Any:
    cls = anthropic.AsyncAnthropic if asynchronous else anthropic.Anthropic
    return tally.instrument(cls(api_key="sk-test", base_url=fake.url, max_retries=0))


def overspend(tally: Tally, client: anthropic.Anthropic, **context: Any) -> None:
    """One $1.05 call (in `context`), delivered and rolled up: a $1 budget covering it is exceeded."""
    from rollups.services import rollup_until_current

    with tally.context(**context):
        client.messages.create(model=MODEL, max_tokens=10, messages=user("big"))
    assert tally.flush(10), tally.stats()
    rollup_until_current()


def blocked(tally: Tally, **context: Any) -> bool:
    with tally.context(**context):
        try:
            tally.check_budgets()
        except BudgetExceeded:
            return True
    return False


def settled(tally: Tally) -> None:
    """Wait until the guard has had two answers more: one that began after what came before."""
    assert tally._guard is not None
    seen = tally._guard.refreshed
    assert wait_for(lambda: tally._guard.refreshed >= seen + 2, timeout=5)  # type: ignore[union-attr]


def test_exceeded_daily_budget_refuses_every_kind_of_call_before_any_request(make_tally, fake_anthropic):
    budget("Daily cap")
    tally = make_tally(enforce_budgets=True, budget_refresh_interval=INTERVAL)
    client = instrumented(tally, fake_anthropic)
    aclient = instrumented(tally, fake_anthropic, asynchronous=True)
    assert not blocked(tally)
    overspend(tally, client)
    assert wait_for(lambda: blocked(tally), timeout=5)

    kwargs = {"model": MODEL, "max_tokens": 10, "messages": user("hello")}
    batch = [{"custom_id": "a", "params": kwargs}]

    def helper() -> None:
        with client.messages.stream(**kwargs):
            pass

    async def ahelper() -> None:
        async with aclient.messages.stream(**kwargs):
            pass

    calls: dict[str, Callable[[], Any]] = {
        "create": lambda: client.messages.create(**kwargs),
        "create(stream=True)": lambda: client.messages.create(**kwargs, stream=True),
        "stream()": helper,
        "parse": lambda: client.messages.parse(**kwargs),
        "with_raw_response": lambda: client.with_raw_response.messages.create(**kwargs),
        "with_options": lambda: client.with_options(timeout=5).messages.create(**kwargs),
        "batches.create": lambda: client.messages.batches.create(requests=batch),
        "async create": lambda: asyncio.run(aclient.messages.create(**kwargs)),
        "async create(stream=True)": lambda: asyncio.run(aclient.messages.create(**kwargs, stream=True)),
        "async stream()": lambda: asyncio.run(ahelper()),
        "async batches.create": lambda: asyncio.run(aclient.messages.batches.create(requests=batch)),
    }
    requests_before = len(fake_anthropic.requests)
    for name, call in calls.items():
        with pytest.raises(BudgetExceeded) as raised:
            call()
        exc = raised.value
        assert (exc.budget, exc.period, exc.limit_usd) == ("Daily cap", "day", 1.0), name
        assert exc.spent_usd == pytest.approx(BIG_COST, abs=0.001)
        assert exc.scope == {"environment": None, "service": None, "user_id": None}
        assert "'Daily cap' exceeded: $1.05 spent of $1.00 (daily)" in str(exc)
    assert len(fake_anthropic.requests) == requests_before  # not one request reached the API
    assert tally.stats()["blocked"] == len(calls)
    assert tally.flush(10)
    assert len(events_by_request_id()) == 1  # only the call that overspent: a refused call records nothing

    # Raise the limit: the next answer lifts the block.
    from alerts.models import Budget

    Budget.objects.filter(name="Daily cap").update(limit_usd=Decimal(5))
    assert wait_for(lambda: not blocked(tally), timeout=5)
    client.messages.create(**kwargs)


def test_a_service_budget_blocks_that_service_only(make_tally, fake_anthropic):
    budget("Search cap", service="search")
    search = make_tally(service="search", enforce_budgets=True, budget_refresh_interval=INTERVAL)
    other = make_tally(service="other", enforce_budgets=True, budget_refresh_interval=INTERVAL)
    search_client, other_client = instrumented(search, fake_anthropic), instrumented(other, fake_anthropic)
    overspend(search, search_client)
    assert wait_for(lambda: blocked(search), timeout=5)
    settled(other)
    assert not blocked(other)
    other_client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))  # goes through
    with pytest.raises(BudgetExceeded, match="Search cap"):
        search_client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
    # The service a call is recorded under is the one judged: the context's, else the client's.
    with search.context(service="other"):
        search_client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
    with other.context(service="search"), pytest.raises(BudgetExceeded):
        other_client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))


def test_a_user_budget_blocks_only_inside_that_users_context(make_tally, fake_anthropic):
    # A budget names the user as the events carry it: hashed when the client hashes user ids.
    hashed = hmac.new(b"pepper", b"u_8", hashlib.sha256).hexdigest()
    budget("Heavy user", user_id="u_9")
    budget("Heavy hashed user", user_id=hashed)
    plain = make_tally(enforce_budgets=True, budget_refresh_interval=INTERVAL)
    peppered = make_tally(enforce_budgets=True, budget_refresh_interval=INTERVAL, user_id_hmac_key="pepper")
    client, pclient = instrumented(plain, fake_anthropic), instrumented(peppered, fake_anthropic)
    with peppered.context(user_id="u_8"):
        pclient.messages.create(model=MODEL, max_tokens=10, messages=user("big"))
    assert peppered.flush(10)
    overspend(plain, client, user_id="u_9")
    assert {e.user_id for e in events_by_request_id().values()} == {"u_9", hashed}
    assert wait_for(lambda: blocked(plain, user_id="u_9") and blocked(peppered, user_id="u_8"), timeout=5)

    requests_before = len(fake_anthropic.requests)
    for tally, c, name, stored in ((plain, client, "u_9", "u_9"), (peppered, pclient, "u_8", hashed)):
        with tally.context(user_id=name), pytest.raises(BudgetExceeded) as raised:
            c.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
        assert raised.value.scope["user_id"] == stored
        with (
            tally.context(feature="search", user_id=name),
            tally.context(feature="nested"),
            pytest.raises(BudgetExceeded),
        ):
            c.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
    assert len(fake_anthropic.requests) == requests_before
    # Another user, and calls outside any user's context, go through.
    for tally, c in ((plain, client), (peppered, pclient)):
        with tally.context(user_id="u_10"):
            c.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
        c.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
    assert not blocked(plain, user_id="u_8")  # u_8 is over only as a hashed id: not as a plain one
    assert not blocked(peppered, user_id="u_9")  # and u_9 only in plain
    assert len(fake_anthropic.requests) == requests_before + 4


def test_a_budget_of_another_environment_does_not_block(make_tally, fake_anthropic):
    budget("Staging cap", environment="staging")
    tally = make_tally(enforce_budgets=True, budget_refresh_interval=INTERVAL)  # an acme/prod key
    from ingest.services import events_ingest
    from projects.services import ingest_key_create
    from rollups.services import rollup_until_current

    staging = ingest_key_create(project_slug="acme", environment_name="staging").key
    events_ingest(
        project_id=staging.project_id,
        environment_id=staging.environment_id,
        max_batch=10,
        body={
            "events": [
                {
                    "request_id": "staging-1",
                    "model": MODEL,
                    "latency_ms": 5,
                    "input_tokens": 1_000_000,
                    "service": "api",
                }
            ]
        },
    )  # $3 in staging
    rollup_until_current()
    settled(tally)
    assert not blocked(tally)


class StatusProxy:
    """Forwards every request to the live server, counting them by (method, path); with
    `fail` set, answers that status instead (Tally failing)."""

    def __init__(self, upstream: str) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()
        self.fail: int | None = None
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _forward(self) -> None:
                proxy.seen[(self.command, self.path.split("?")[0])] += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.fail is not None:
                    status, data, content_type = proxy.fail, b'{"error": "down for maintenance"}', "application/json"
                else:
                    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    status, data = response.status, response.read()
                    content_type = response.getheader("Content-Type", "application/json")
                    conn.close()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(live_server):  # type: ignore[no-untyped-def]
    made = StatusProxy(live_server.url)
    yield made
    made.stop()


STATUS = ("GET", "/api/v1/budgets/status")


def test_without_enforce_budgets_nothing_is_fetched_and_nothing_blocked(make_tally, fake_anthropic, proxy):
    budget("Daily cap")
    tally = make_tally(proxy.url)  # enforce_budgets defaults to False
    client = instrumented(tally, fake_anthropic)
    overspend(tally, client)
    watcher = make_tally(proxy.url, enforce_budgets=True, budget_refresh_interval=INTERVAL)
    assert wait_for(lambda: blocked(watcher), timeout=5)  # the budget is exceeded, and the proxy sees status requests
    for _ in range(3):
        client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
        tally.check_budgets()  # a no-op
    assert tally.flush(10)
    watcher.close(timeout=0)
    watcher._guard._thread.join(5)  # type: ignore[union-attr]  # a request in flight is counted now
    fetched = proxy.seen[STATUS]
    assert fetched >= 1
    assert proxy.seen[("POST", "/api/v1/events")] >= 2
    # Every status request came from the watcher: the same client without the guard made none.
    tally2 = make_tally(proxy.url)
    instrumented(tally2, fake_anthropic).messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
    assert tally2.flush(10)
    time.sleep(3 * INTERVAL)
    assert proxy.seen[STATUS] == fetched
    assert tally.stats()["blocked"] == tally2.stats()["blocked"] == 0
    assert tally._guard is None


def test_tally_answering_errors_lifts_the_block_fail_open(make_tally, fake_anthropic, proxy, caplog):
    budget("Daily cap")
    tally = make_tally(proxy.url, enforce_budgets=True, budget_refresh_interval=INTERVAL)
    client = instrumented(tally, fake_anthropic)
    overspend(tally, client)
    assert wait_for(lambda: blocked(tally), timeout=5)
    with caplog.at_level(logging.WARNING, logger="tally_client"):
        proxy.fail = 503
        assert wait_for(lambda: not blocked(tally), timeout=5)
        client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))  # goes through
        failures = proxy.seen[STATUS]
        assert wait_for(lambda: proxy.seen[STATUS] >= failures + 3, timeout=5)
    assert caplog.text.count("budget status answered 503") == 1  # rate-limited
    proxy.fail = None  # back: blocked again
    assert wait_for(lambda: blocked(tally), timeout=5)


def _timed(client: anthropic.Anthropic, n: int) -> list[float]:
    durations = []
    for _ in range(n):
        started = time.perf_counter()
        client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
        durations.append(time.perf_counter() - started)
    return durations


def test_tally_down_or_hanging_never_blocks_nor_slows_a_call(make_tally, fake_anthropic, caplog):
    refused = closed_port()  # connections refused at once
    hanging = socket.socket()  # accepts connections (the backlog), never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)
    try:
        plain = instrumented(make_tally(f"http://127.0.0.1:{refused.getsockname()[1]}"), fake_anthropic)
        with caplog.at_level(logging.WARNING, logger="tally_client"):
            down = make_tally(
                f"http://127.0.0.1:{refused.getsockname()[1]}", enforce_budgets=True, budget_refresh_interval=0.02
            )
            hung = make_tally(
                f"http://127.0.0.1:{hanging.getsockname()[1]}",
                enforce_budgets=True,
                budget_refresh_interval=0.02,
                timeout=3,
            )
            clients = [plain, instrumented(down, fake_anthropic), instrumented(hung, fake_anthropic)]
            for c in clients:
                _timed(c, 3)  # warm the connection pools
            durations: list[list[float]] = [[], [], []]
            for _ in range(5):  # interleaved, so machine noise hits all three alike
                for i, c in enumerate(clients):
                    durations[i] += _timed(c, 4)
        base = statistics.median(durations[0])
        for spent in durations[1:]:
            assert statistics.median(spent) - base < 0.002
            assert max(spent) < 0.5
        assert down.stats()["blocked"] == hung.stats()["blocked"] == 0
        # Dozens of refused refreshes, one warning.
        assert caplog.text.count("budget status unavailable ([Errno 111] Connection refused)") == 1
    finally:
        refused.close()
        hanging.close()


def test_user_ids_are_judged_as_sent_on_the_wire():
    for key in (None, b"pepper"):
        for raw in ("u_9", 42, "x" * 300, "a\x00b"):
            assert wire_user_id(raw, key) == to_wire({"user_id": raw}, user_id_key=key)["user_id"]


def test_the_pre_call_check_costs_under_5_microseconds(capsys):
    from tally_client import _context
    from tally_client._anthropic import _Call

    sock = closed_port()
    guarded = Tally(
        f"http://127.0.0.1:{sock.getsockname()[1]}", "k", service="api", enforce_budgets=True, user_id_hmac_key="pepper"
    )
    guard = guarded._guard
    assert guard is not None
    guard.close()  # stop the refresher: the verdicts below are set by hand
    guard._thread.join(5)  # type: ignore[union-attr]

    def per_call_us(fn: Callable[[], Any]) -> float:
        number = 20_000
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    figures = {}
    with _context.context(user_id="u_1", feature="search"):
        ctx = _context.current()
        guard._verdicts = None  # nothing exceeded: the normal case
        figures["nothing exceeded"] = per_call_us(lambda: guard.check(ctx))
        # Exceeded budgets, none covering this call: the whole slow path, without raising.
        guard._verdicts = verdicts_from(
            [
                {"id": 1, "name": "svc", "exceeded": True, "scope": {"service": "batch-jobs"}},
                {"id": 2, "name": "usr", "exceeded": True, "scope": {"user_id": "someone-else"}},
                {
                    "id": 3,
                    "name": "usr-svc",
                    "exceeded": True,
                    "scope": {"service": "other", "user_id": wire_user_id("u_1", b"pepper")},
                },
            ]
        )
        guard.check(ctx)
        figures["others exceeded"] = per_call_us(lambda: guard.check(ctx))
        guard._verdicts = None
        # What an instrumented call pays: _Call() (where the check is) with and without a guard.
        with_guard, without_guard = [], []
        for _ in range(7):
            with_guard.append(per_call_us(lambda: _Call(guarded, MODEL)))
            guarded._guard = None
            without_guard.append(per_call_us(lambda: _Call(guarded, MODEL)))
            guarded._guard = guard
    figures["_Call() with - without guard"] = min(with_guard) - min(without_guard)
    with capsys.disabled():
        print("\nbudget guard pre-call check: " + ", ".join(f"{k} {v:.3f} µs" for k, v in figures.items()))
    assert figures["nothing exceeded"] < 5
    assert figures["others exceeded"] < 5
    assert figures["_Call() with - without guard"] < 5
    guarded.close(0)
    sock.close()


def test_a_forked_child_restarts_the_refresher():
    sock = closed_port()
    tally = Tally(f"http://127.0.0.1:{sock.getsockname()[1]}", "k", enforce_budgets=True, budget_refresh_interval=0.01)
    guard = tally._guard
    assert guard is not None
    parent_thread = guard._thread
    pid = os.fork()
    if pid == 0:  # the child: no refresher thread here until the first check
        ok = guard._thread is None
        tally.check_budgets()
        child_thread = guard._thread
        ok = ok and child_thread is not None and child_thread.is_alive() and child_thread is not parent_thread
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert guard._thread is parent_thread
    assert parent_thread is not None
    assert parent_thread.is_alive()
    tally.close(0)
    sock.close()
