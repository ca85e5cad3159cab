"""Tally down: the application's calls go on unchanged; Tally back: the queued events arrive,
once each. Tally's address is a port bound in advance but not listening (connections are
refused); "Tally comes back" is that port starting to listen, behind a small HTTP proxy to the
live server."""

from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import anthropic

from tests.sdk.conftest import MODEL, closed_port, events_by_request_id, user, wait_for


class Proxy:
    """Forwards POSTs to `upstream`; the first `lose_responses` answers are thrown away after the
    upstream committed them (the client sees the connection drop), to force re-sends."""

    def __init__(self, sock: socket.socket, upstream: str, *, lose_responses: int = 0) -> None:
        self.lose_responses = lose_responses
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                if proxy.lose_responses > 0:
                    proxy.lose_responses -= 1
                    self.close_connection = True
                    return
                self.send_response(response.status)
                self.send_header("Content-Type", response.getheader("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = sock
        self.server.daemon_threads = True

    def start(self) -> Proxy:
        self.server.server_activate()  # listen(): Tally is reachable from now on
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _timed_calls(client: anthropic.Anthropic, n: int) -> tuple[list[float], list[str]]:
    durations, ids = [], []
    for _ in range(n):
        started = time.perf_counter()
        message = client.messages.create(model=MODEL, max_tokens=10, messages=user("hello"))
        durations.append(time.perf_counter() - started)
        ids.append(message._request_id)
    return durations, ids


def test_calls_are_unaffected_while_tally_is_down_and_queued_events_arrive_once_it_is_back(
    make_tally, live_server, fake_anthropic
):
    sock = closed_port()
    tally = make_tally(
        f"http://127.0.0.1:{sock.getsockname()[1]}",
        queue_size=20,
        flush_interval=0.01,
        initial_backoff=0.02,
        max_backoff=0.1,
    )
    raw = anthropic.Anthropic(api_key="sk-test", base_url=fake_anthropic.url)
    instrumented = tally.instrument(anthropic.Anthropic(api_key="sk-test", base_url=fake_anthropic.url))
    _timed_calls(raw, 5)  # warm both connection pools
    _timed_calls(instrumented, 5)
    raw_durations: list[float] = []
    instrumented_durations: list[float] = []
    ids: list[str] = []
    for _ in range(6):  # interleaved, so machine noise hits both alike
        raw_durations += _timed_calls(raw, 5)[0]
        spent, made = _timed_calls(instrumented, 5)
        instrumented_durations += spent
        ids += made
    assert len(ids) == 30  # every call succeeded, no exception
    assert statistics.median(instrumented_durations) - statistics.median(raw_durations) < 0.002
    assert max(instrumented_durations) < 0.5  # never waited on Tally

    # 5 warm-up + 30 events for a queue of 20: the 15 oldest were dropped.
    assert wait_for(lambda: tally.stats()["queued"] == 20 and tally.stats()["dropped"] == 15), tally.stats()
    assert events_by_request_id() == {}

    proxy = Proxy(sock, live_server.url).start()
    try:
        assert tally.flush(10), tally.stats()
    finally:
        proxy.stop()
    assert sorted(events_by_request_id()) == sorted(ids[-20:])
    assert tally.stats()["sent"] == 20
    assert tally.stats()["duplicates"] == 0


def test_a_lost_response_is_re_sent_and_stored_once(make_tally, live_server):
    sock = closed_port()
    proxy = Proxy(sock, live_server.url, lose_responses=2).start()
    try:
        tally = make_tally(f"http://127.0.0.1:{sock.getsockname()[1]}", initial_backoff=0.02)
        for i in range(10):
            tally.record(request_id=f"lost-{i}", model=MODEL, latency_ms=5.0, input_tokens=10)
        assert tally.flush(10), tally.stats()
    finally:
        proxy.stop()
    assert len(events_by_request_id()) == 10
    stats = tally.stats()
    # Two deliveries were committed but their answers lost; the third attempt found them all stored.
    assert stats["sent"] == 0
    assert stats["duplicates"] == 10
    assert stats["retries"] >= 1
