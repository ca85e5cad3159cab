"""Delivery promises of tally_client against a stand-in ingest endpoint (no Django): batching,
gzip, retries with backoff and Retry-After, idempotent re-sends, the bounded queue, warnings,
flush at exit, and never raising into the application."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from tally_client import Tally

from tests.sdk.conftest import MODEL, SDK_DIR, Collector, closed_port, wait_for


def event(i: int, **extra: object) -> dict:
    return {"request_id": f"r{i}", "model": MODEL, "latency_ms": 10.0, "input_tokens": i, **extra}


def test_batches_are_gzipped_authenticated_and_at_most_batch_size(collector):
    tally = Tally(collector.url, "tly_secret", service="svc", batch_size=3, flush_interval=30)
    for i in range(7):
        tally.record(**event(i))
    assert tally.flush(5)
    assert [len(p["events"]) for p in collector.posts] == [3, 3, 1]
    post = collector.posts[0]
    assert post["path"] == "/api/v1/events"
    assert post["headers"]["Authorization"] == "Bearer tly_secret"
    assert post["headers"]["Content-Encoding"] == "gzip"
    first = collector.events()[0]
    assert first["service"] == "svc"
    assert first["request_id"] == "r0"
    assert first["timestamp"].endswith("+00:00")  # RFC 3339 with offset
    tally.close(0)


def test_a_full_batch_is_sent_without_waiting_for_the_interval(collector):
    tally = Tally(collector.url, "k", batch_size=5, flush_interval=30)
    for i in range(5):
        tally.record(**event(i))
    assert wait_for(lambda: len(collector.events()) == 5, timeout=3)
    tally.close(0)


def test_retry_after_is_honoured_on_429_and_503_and_resends_keep_request_ids():
    collector = Collector(script=[(429, {"Retry-After": "1"}), (503, {"Retry-After": "0.2"})])
    tally = Tally(collector.url, "k", flush_interval=0.01, initial_backoff=0.01)
    tally.record(**event(1))
    assert tally.flush(5)
    first, second, third = collector.posts
    assert second["at"] - first["at"] >= 0.95  # Retry-After: 1 (not the 10 ms backoff)
    assert third["at"] - second["at"] >= 0.19
    assert [p["events"][0]["request_id"] for p in collector.posts] == ["r1", "r1", "r1"]
    assert tally.stats()["retries"] == 2
    assert tally.stats()["sent"] == 1
    tally.close(0)
    collector.stop()


def test_5xx_and_connection_errors_back_off_exponentially_with_jitter():
    collector = Collector(script=[(500, {}), (502, {}), (500, {})])
    tally = Tally(collector.url, "k", flush_interval=0.01, initial_backoff=0.05, max_backoff=1)
    tally.record(**event(1))
    assert tally.flush(5)
    gaps = [b["at"] - a["at"] for a, b in zip(collector.posts, collector.posts[1:], strict=False)]
    # Equal jitter: attempt n waits between half and all of 0.05 * 2**n.
    assert 0.025 <= gaps[0] <= 0.2
    assert 0.05 <= gaps[1] <= 0.3
    assert 0.1 <= gaps[2] <= 0.5
    tally.close(0)
    collector.stop()


def test_refused_batches_are_dropped_not_retried_and_413_splits(caplog):
    collector = Collector(script=[(401, {}), (413, {})])
    tally = Tally(collector.url, "bad", flush_interval=30)
    tally.record(**event(1))
    assert tally.flush(5)
    assert len(collector.posts) == 1
    assert tally.stats()["rejected"] == 1
    for i in range(2, 6):
        tally.record(**event(i))
    assert tally.flush(5)
    # 413 for the four: two halves of two, delivered.
    assert [len(p["events"]) for p in collector.posts[1:]] == [4, 2, 2]
    assert tally.stats()["sent"] == 4
    assert "refused 1 events with 401" in caplog.text
    tally.close(0)
    collector.stop()


def test_a_full_queue_drops_the_oldest_and_counts_them():
    sock = closed_port()
    tally = Tally(
        f"http://127.0.0.1:{sock.getsockname()[1]}",
        "k",
        queue_size=5,
        flush_interval=0.01,
        initial_backoff=0.01,
        max_backoff=0.02,
    )
    for i in range(8):
        tally.record(**event(i))
    assert wait_for(lambda: tally.stats()["dropped"] == 3 and tally.stats()["queued"] == 5)
    assert [e["request_id"] for e in tally._sender._queue] == ["r3", "r4", "r5", "r6", "r7"]
    tally.close(0)
    assert tally.stats()["lost"] == 5
    sock.close()


def test_warnings_are_rate_limited(caplog):
    sock = closed_port()
    tally = Tally(
        f"http://127.0.0.1:{sock.getsockname()[1]}",
        "k",
        queue_size=2,
        flush_interval=0.01,
        initial_backoff=0.005,
        max_backoff=0.01,
    )
    with caplog.at_level(logging.WARNING, logger="tally_client"):
        for i in range(20):
            tally.record(**event(i))
        wait_for(lambda: tally.stats()["retries"] >= 10)
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    dropped = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(unreachable) == 1
    assert len(dropped) == 1
    assert tally.stats()["warnings_suppressed"] >= 10
    tally.close(0)
    sock.close()


def test_record_never_raises_and_skips_what_it_cannot_send(collector, caplog):
    tally = Tally(collector.url, "k", flush_interval=30)
    tally.record(model=MODEL)  # minimal: request_id and latency filled in
    tally.record(request_id="no-model", latency_ms=1)  # no model: ignored with a warning
    tally.record(
        request_id="odd",
        model=MODEL,
        latency_ms=float("nan"),
        input_tokens="many",
        prompt="secret",
        metadata={"k": object(), "n": 1, **{f"x{i}": "v" for i in range(30)}},
        user_id="u" * 999,
    )
    assert tally.flush(5)
    minimal, odd = collector.events()
    assert minimal["request_id"].startswith("tally_")
    assert minimal["latency_ms"] == 0.0
    assert "prompt" not in odd
    assert odd["input_tokens"] == 0
    assert odd["latency_ms"] == 0.0
    assert len(odd["metadata"]) == 20
    assert odd["metadata"]["n"] == "1"
    assert len(odd["user_id"]) == 256
    assert "needs a model" in caplog.text
    assert "unknown fields ['prompt']" in caplog.text
    tally.close(0)


def test_bad_endpoint_fails_at_construction_not_at_call_time():
    with pytest.raises(ValueError, match="http"):
        Tally("tally.example.com", "k")


def test_close_is_bounded_when_tally_hangs():
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1)  # accepts TCP connections (backlog) but never answers
    tally = Tally(f"http://127.0.0.1:{hung.getsockname()[1]}", "k", flush_interval=0.01, timeout=0.2)
    tally.record(**event(1))
    started = time.monotonic()
    tally.close(timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert tally.stats()["lost"] == 1
    hung.close()


def test_queued_events_are_flushed_at_interpreter_exit(collector):
    script = textwrap.dedent(f"""
        from tally_client import Tally
        tally = Tally({collector.url!r}, "k", flush_interval=3600)
        for i in range(3):
            tally.record(request_id=f"exit-{{i}}", model="claude-sonnet-4-6", latency_ms=1)
    """)
    env = {**os.environ, "PYTHONPATH": str(SDK_DIR)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=30)
    assert [e["request_id"] for e in collector.events()] == ["exit-0", "exit-1", "exit-2"]
