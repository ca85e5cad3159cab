"""tally_client overhead: what instrumentation adds to each Claude API call, Tally up and down.

    .venv/bin/python bench/sdk_overhead.py [--calls 2000] [--quick]

The REAL anthropic SDK calls a fake Anthropic API on loopback (tests/sdk/fake_anthropic.py),
raw and instrumented, interleaved. The fake API and the stand-in Tally (an HTTP endpoint
answering 202, like POST /api/v1/events) run in child processes, so their work does not
compete for this process's GIL; the sender thread of tally_client does, as in production.
"Tally down" points the client at a bound port that refuses connections: the sender keeps
retrying in the background while the calls are measured.

Two figures per case:
- added (direct): per call, time in the instrumented `messages.create` minus the time spent
  in the SDK's own `create` inside it, i.e. exactly what the wrapper adds (capture, event
  building, enqueue). Median and p99 over all calls. Target: median < 50 µs.
- added (end to end): the median of (instrumented call - the raw call made next to it), and
  p99(instrumented) - p99(raw). These include loopback and scheduler noise of tens of µs (the
  p99 difference: hundreds) either way, so they are a cross-check.
Streams (create(stream=True), read to the end) are reported end to end only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import multiprocessing as mp
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk"))

TARGET_MEDIAN_US = 50.0
MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "hello"}]


def _serve_fake_anthropic(ports: Any) -> None:
    from tests.sdk.fake_anthropic import FakeAnthropic

    fake = FakeAnthropic()
    ports.put(fake.server.server_address[1])
    fake.server.serve_forever()


def _serve_collector(ports: Any) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
            accepted = len(json.loads(data)["events"])
            body = json.dumps({"accepted": accepted, "duplicates": 0, "rejected": []}).encode()
            self.send_response(202)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ports.put(server.server_address[1])
    server.serve_forever()


def _child(target: Any) -> tuple[mp.Process, int]:
    ports: Any = mp.Queue()
    process = mp.Process(target=target, args=(ports,), daemon=True)
    process.start()
    return process, ports.get(timeout=30)


class _TimedInner:
    """Stands in for the SDK's Messages inside the proxy; records the time the SDK itself took."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.last = 0.0

    def create(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._inner.create(*args, **kwargs)
        finally:
            self.last = time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"


def measure(case: str, tally_url: str, fake_url: str, calls: int) -> dict[str, float]:
    import anthropic
    from tally_client import Tally

    tally = Tally(tally_url, "bench-key", service="bench", initial_backoff=0.05, max_backoff=1.0)
    raw = anthropic.Anthropic(api_key="sk-bench", base_url=fake_url, max_retries=0)
    inst = tally.instrument(anthropic.Anthropic(api_key="sk-bench", base_url=fake_url, max_retries=0))
    timed = _TimedInner(inst.messages._inner)
    inst.messages._inner = timed

    def stream(client: Any) -> None:
        for _ in client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, stream=True):
            pass

    for _ in range(50):  # warm connection pools, caches and the sender thread
        raw.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
        inst.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
        stream(raw)
        stream(inst)
    direct, raw_t, inst_t, raw_s, inst_s = [], [], [], [], []
    for i in range(calls):
        order = (raw, inst) if i % 2 else (inst, raw)
        for client in order:
            started = time.perf_counter()
            client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
            spent = time.perf_counter() - started
            if client is inst:
                inst_t.append(spent)
                direct.append(spent - timed.last)
            else:
                raw_t.append(spent)
        for client in order:
            started = time.perf_counter()
            stream(client)
            (inst_s if client is inst else raw_s).append(time.perf_counter() - started)
    stats = tally.stats()
    tally.close(timeout=0.5 if case == "down" else 5)
    result = {
        "direct_median": statistics.median(direct),
        "direct_p99": _p(direct, 0.99),
        # Median of the paired differences (each instrumented call against the raw call next to
        # it): steadier under machine noise than a difference of medians.
        "e2e_median": statistics.median(i - r for i, r in zip(inst_t, raw_t, strict=True)),
        "e2e_p99": _p(inst_t, 0.99) - _p(raw_t, 0.99),
        "raw_median": statistics.median(raw_t),
        "stream_median": statistics.median(i - r for i, r in zip(inst_s, raw_s, strict=True)),
        "stream_p99": _p(inst_s, 0.99) - _p(raw_s, 0.99),
        "raw_stream_median": statistics.median(raw_s),
    }
    print(
        f"\nTally {case}  ({calls} calls of each kind; events sent {stats['sent']}, queued {stats['queued']}, "
        f"dropped {stats['dropped']}, sender retries {stats['retries']})"
    )
    print(f"  raw create, median          {_us(result['raw_median'])}")
    print(
        f"  added (direct)   median     {_us(result['direct_median'])}   p99 {_us(result['direct_p99'])}"
        f"   target median < {TARGET_MEDIAN_US:.0f} µs: {'OK' if result['direct_median'] * 1e6 < TARGET_MEDIAN_US else 'MISSED'}"
    )
    print(f"  added (end to end) median   {_us(result['e2e_median'])}   p99 {_us(result['e2e_p99'])}")
    print(f"  stream, raw median          {_us(result['raw_stream_median'])}")
    print(f"  stream added (end to end)   {_us(result['stream_median'])}   p99 {_us(result['stream_p99'])}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="300 calls per case")
    args = parser.parse_args()
    # "Tally unreachable" warnings are expected in the "down" case; the counters below say it.
    logging.getLogger("tally_client").setLevel(logging.ERROR)
    calls = 300 if args.quick else args.calls
    fake, fake_port = _child(_serve_fake_anthropic)
    collector, collector_port = _child(_serve_collector)
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        results = {
            "up": measure("up", f"http://127.0.0.1:{collector_port}", f"http://127.0.0.1:{fake_port}", calls),
            "down": measure(
                "down", f"http://127.0.0.1:{refused.getsockname()[1]}", f"http://127.0.0.1:{fake_port}", calls
            ),
        }
    finally:
        refused.close()
        fake.terminate()
        collector.terminate()
    ok = all(r["direct_median"] * 1e6 < TARGET_MEDIAN_US for r in results.values())
    print(f"\nmedian added per call < {TARGET_MEDIAN_US:.0f} µs with Tally up and down: {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
