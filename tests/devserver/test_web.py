"""The web server as `make run`, the bench and docker start it (granian, `devserver.run.web_command`),
on the test database: what Tally needs from it.

- ingest answers through it, and `/metrics` adds up the counts of every worker process
  (PROMETHEUS_MULTIPROC_DIR);
- Django's JSON logs, with the request ID, reach the server's output;
- SIGTERM stops it gracefully: a request whose body is still arriving is answered and committed,
  then the server exits 0 within its stop timeout.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

from devserver.run import WEB_STOP_TIMEOUT_S, web_command
from tests.conftest import committed_event_count

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_events")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _test_database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@contextmanager
def _server(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str], Path]]:
    port = _free_port()
    prom = tmp_path / "prometheus"
    prom.mkdir()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": _test_database_url(),
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
        "LOG_LEVEL": "INFO",
    }
    with log.open("w") as out:
        # A session of its own: if it must be killed, its worker processes go with it.
        proc = subprocess.Popen(
            web_command(port=port, workers=2, threads=2),
            cwd=ROOT,
            env=env,  # noqa: S603
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not _healthy(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the web server did not come up:\n" + log.read_text()
            time.sleep(0.2)
        yield port, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the main process stops its workers
            try:
                proc.wait(timeout=WEB_STOP_TIMEOUT_S + 10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _post(port: int, secret: str, body: bytes, **headers: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/api/v1/events",
            body=body,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json", **headers},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _event(request_id: str) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "model": "claude-sonnet-4-6",
            "latency_ms": 812,
            "input_tokens": 1200,
            "output_tokens": 300,
        }
    ).encode()


def test_ingest_metrics_and_logs_through_the_server(tmp_path, ingest_key):
    secret, _ = ingest_key
    with _server(tmp_path) as (port, _proc, log):
        # A new connection each: the workers share the listening socket, so both take some.
        statuses = [_post(port, secret, _event(f"web-{i}"))[0] for i in range(12)]
        assert statuses == [202] * 12
        assert committed_event_count([f"web-{i}" for i in range(12)]) == 12
        status, _ = _post(port, "tly_not-a-key", _event("web-x"), **{"X-Request-ID": "trace-me-42"})
        assert status == 401

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        conn.close()
    # Summed over the worker processes' files, whichever worker served which post.
    assert 'tally_ingest_events_total{outcome="accepted",project="acme"} 12.0' in metrics
    assert "tally_ingest_request_seconds_count 13.0" in metrics
    assert list((tmp_path / "prometheus").glob("*.db"))

    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    unauthorized = [r for r in records if r.get("request_id") == "trace-me-42"]
    assert [(r["level"], r["logger"], r["status_code"]) for r in unauthorized] == [("WARNING", "django.request", 401)]


def test_sigterm_answers_the_request_in_flight_then_exits(tmp_path, ingest_key):
    secret, _ = ingest_key
    body = _event("web-in-flight")
    with _server(tmp_path) as (port, proc, _log):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (
            f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:10])  # the request has started; its body is still arriving
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 202"), answer
        assert answer.endswith(b'{"accepted": 1, "duplicates": 0, "rejected": []}')
        assert committed_event_count(["web-in-flight"]) == 1
        assert proc.wait(timeout=WEB_STOP_TIMEOUT_S + 10) == 0
