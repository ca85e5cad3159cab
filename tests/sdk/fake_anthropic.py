"""A fake Anthropic API on loopback, for driving the REAL anthropic SDK (tech-facts §1.9 option B).

The last user message picks the behaviour (so one server serves every test):

| text               | answer                                                                    |
|--------------------|---------------------------------------------------------------------------|
| anything else      | a text reply, `end_turn`, usage `PLAIN`                                   |
| `tool`             | a tool_use block, `tool_use`, usage `PLAIN`                               |
| `cache`            | a text reply with cache reads and 5m/1h writes, usage `CACHE`             |
| `big`              | a text reply, usage `BIG` (100k in, 50k out: $1.05 on claude-sonnet-4-6)  |
| `fail:<status>:<n>`| attempts 0..n-1 (x-stainless-retry-count) fail with <status>, then a reply |
| `slow:<seconds>`   | sleeps, then a reply (for client timeouts)                                |
| `stream-error`     | (streams) message_start, one delta, then an SSE `error` event             |
| `batch-error`      | (batches) an errored result                                               |

`"stream": true` gets SSE. Every response has a unique `request-id` header (`req_<n>`), and
every request is logged in `.requests` as (method, path, retry count, request id). While
`.ratelimit` is set ({"requests-remaining": "3", ...}), every POST's response (ok, error or
stream) also carries it as `anthropic-ratelimit-<name>` headers, as the real API does.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PLAIN = {
    "input_tokens": 12,
    "output_tokens": 5,
    "cache_read_input_tokens": 0,
    "cache_creation_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "service_tier": "standard",
}
CACHE = {
    "input_tokens": 12,
    "output_tokens": 5,
    "cache_read_input_tokens": 2000,
    "cache_creation_input_tokens": 100,
    "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60},
    "service_tier": "standard",
}
BIG = {**PLAIN, "input_tokens": 100_000, "output_tokens": 50_000}  # under the 200k long-context tier
ERROR_TYPES = {
    400: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


def _last_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content", "")
    if isinstance(content, list):
        return " ".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(content)


class FakeAnthropic:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.requests: list[tuple[str, str, int, str]] = []
        self.batches: dict[str, dict[str, Any]] = {}
        self.ratelimit: dict[str, str] | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def message(self, n: int, model: str, text: str) -> dict[str, Any]:
        usage = CACHE if text == "cache" else BIG if text == "big" else PLAIN
        if text == "tool":
            content = [{"type": "tool_use", "id": f"toolu_{n}", "name": "search", "input": {"q": "tally"}}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": "Hello from the fake."}]
            stop = "end_turn"
        return {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": json.loads(json.dumps(usage)),
        }

    def batch(self, batch_id: str) -> dict[str, Any]:
        info = self.batches[batch_id]
        created = info["created_at"]
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended",
            "request_counts": {
                "processing": 0,
                "succeeded": info["ok"],
                "errored": info["errored"],
                "canceled": 0,
                "expired": 0,
            },
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "ended_at": (created + timedelta(minutes=3)).isoformat().replace("+00:00", "Z"),
            "expires_at": (created + timedelta(hours=24)).isoformat().replace("+00:00", "Z"),
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results",
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        pass

    @property
    def fake(self) -> FakeAnthropic:
        return self.server.fake  # type: ignore[attr-defined]

    def _send(self, status: int, body: bytes, content_type: str, request_id: str | None, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("request-id", request_id)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if self.command == "POST":
            for name, value in (self.fake.ratelimit or {}).items():
                self.send_header(f"anthropic-ratelimit-{name}", value)
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up (timeout tests)
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, request_id: str | None, **headers: str) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", request_id, **headers)

    def do_GET(self) -> None:
        n = self.fake.next_id()
        rid = f"req_{n}"
        self.fake.requests.append(("GET", self.path, int(self.headers.get("x-stainless-retry-count", 0)), rid))
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 4 and parts[:3] == ["v1", "messages", "batches"] and parts[3] in self.fake.batches:
            batch_id = parts[3]
            if len(parts) == 5 and parts[4] == "results":
                lines = [json.dumps(r) for r in reversed(self.fake.batches[batch_id]["results"])]
                self._send(200, ("\n".join(lines) + "\n").encode(), "application/binary", rid)
            else:
                self._json(200, self.fake.batch(batch_id), rid)
            return
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}}, rid)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        attempt = int(self.headers.get("x-stainless-retry-count", 0))
        n = self.fake.next_id()
        rid = f"req_{n}"
        self.fake.requests.append(("POST", self.path, attempt, rid))
        path = self.path.split("?")[0]
        if path == "/v1/messages/batches":
            self._create_batch(body, rid)
            return
        if path != "/v1/messages":
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}}, rid)
            return
        text = _last_text(body)
        if text.startswith("fail:"):
            _, status, times = text.split(":")
            if attempt < int(times):
                error_type = ERROR_TYPES.get(int(status), "api_error")
                self._json(
                    int(status),
                    {"type": "error", "error": {"type": error_type, "message": "fake failure"}, "request_id": rid},
                    rid,
                    retry_after_ms="1",
                )
                return
        if text.startswith("slow:"):
            time.sleep(float(text.split(":")[1]))
        message = self.fake.message(n, body.get("model", "claude-sonnet-4-6"), text)
        if body.get("stream"):
            self._stream(message, rid, error=text == "stream-error")
        else:
            self._json(200, message, rid)

    def _stream(self, message: dict[str, Any], rid: str, *, error: bool) -> None:
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
        block = message["content"][0]
        if block["type"] == "tool_use":
            events += [
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {**block, "input": {}}},
                ),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": '{"q": "tally"}'},
                    },
                ),
            ]
        else:
            events += [
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                ),
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello "}},
                ),
            ]
        if error:
            events.append(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "fake"}}))
        else:
            if block["type"] == "text":
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": "from the fake."},
                        },
                    )
                )
            events += [
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                        "usage": {"output_tokens": usage["output_tokens"]},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
        payload = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()
        self._send(200, payload, "text/event-stream", rid)

    def _create_batch(self, body: dict[str, Any], rid: str) -> None:
        batch_id = f"msgbatch_{self.fake.next_id():04d}"
        results = []
        for item in body.get("requests", []):
            params = item["params"]
            text = _last_text(params)
            if text == "batch-error":
                result: dict[str, Any] = {
                    "type": "errored",
                    "error": {"type": "error", "error": {"type": "invalid_request_error", "message": "fake"}},
                }
            else:
                message = self.fake.message(self.fake.next_id(), params["model"], text)
                message["usage"]["service_tier"] = "batch"
                result = {"type": "succeeded", "message": message}
            results.append({"custom_id": item["custom_id"], "result": result})
        self.fake.batches[batch_id] = {
            "created_at": datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5),
            "results": results,
            "ok": sum(r["result"]["type"] == "succeeded" for r in results),
            "errored": sum(r["result"]["type"] == "errored" for r in results),
        }
        self._json(200, self.fake.batch(batch_id), rid)
