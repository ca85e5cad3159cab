"""Fixtures for the tally_client tests: the SDK package itself is imported from ./sdk (it is
not installed into the venv nor pinned in requirements.lock), a fake Anthropic API on loopback,
and Tally instances pointed at the pytest-django live server."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SDK_DIR = Path(__file__).resolve().parents[2] / "sdk"
if str(SDK_DIR) not in sys.path:
    sys.path.insert(0, str(SDK_DIR))

from tally_client import Tally  # noqa: E402

from tests.sdk.fake_anthropic import FakeAnthropic  # noqa: E402

MODEL = "claude-sonnet-4-6"
# claude-sonnet-4-6, USD per million tokens: input 3, output 15, cache read 0.30, 5m write 3.75, 1h write 6.
_RATES = {
    "input": Decimal(3),
    "output": Decimal(15),
    "read": Decimal("0.30"),
    "w5m": Decimal("3.75"),
    "w1h": Decimal(6),
}


def expected_cost(
    *,
    input: int = 0,
    output: int = 0,
    read: int = 0,
    w5m: int = 0,
    w1h: int = 0,  # noqa: A002
    batch: bool = False,
) -> Decimal:
    total = (
        input * _RATES["input"]
        + output * _RATES["output"]
        + read * _RATES["read"]
        + w5m * _RATES["w5m"]
        + w1h * _RATES["w1h"]
    ) / Decimal(1_000_000)
    return total / 2 if batch else total


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def tally_secret(clean_events) -> str:  # type: ignore[no-untyped-def]
    from projects.services import ingest_key_create

    return ingest_key_create(project_slug="acme", environment_name="prod").secret


@pytest.fixture
def make_tally(live_server, tally_secret) -> Iterator[Callable[..., Tally]]:  # type: ignore[no-untyped-def]
    """Tally instances sending to the live server; closed (without waiting) after the test."""
    made: list[Tally] = []

    def make(endpoint: str | None = None, **options: Any) -> Tally:
        options.setdefault("service", "api")
        options.setdefault("flush_interval", 0.05)
        tally = Tally(endpoint or live_server.url, tally_secret, **options)
        made.append(tally)
        return tally

    yield make
    for tally in made:
        tally.close(timeout=0)


def events_by_request_id() -> dict[str, Any]:
    from ingest.models import Event

    return {e.request_id: e for e in Event.objects.all()}


def closed_port() -> socket.socket:
    """A bound, not listening, TCP socket: connecting to its port is refused at once, and no
    other process can take the port until the test makes it listen (Tally "comes back")."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class Collector:
    """A stand-in ingest endpoint for delivery tests: records every POST (gunzipped body,
    headers, time) and answers from `script` (a list of (status, headers)) before 202s."""

    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None) -> None:
        import gzip
        import json

        self.script = list(script or [])
        self.posts: list[dict[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                events = json.loads(body)["events"]
                collector.posts.append(
                    {"events": events, "headers": dict(self.headers), "at": time.monotonic(), "path": self.path}
                )
                status, headers = collector.script.pop(0) if collector.script else (202, {})
                answer = {"accepted": len(events), "duplicates": 0, "rejected": []} if status == 202 else {}
                out = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def events(self) -> list[dict[str, Any]]:
        return [e for post in self.posts for e in post["events"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    made = Collector()
    yield made
    made.stop()
