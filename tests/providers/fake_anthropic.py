"""A fake Anthropic Admin API: the Usage and Cost Analytics report endpoints on a local HTTP
server thread, for the SDK to reach through ANTHROPIC_BASE_URL.

Every body it sends is built from the installed `anthropic` SDK's own model classes
(BetaAnalyticsUsageItem, BetaAnalyticsCostItem, ErrorResponse, ...) and dumped to JSON, and the
page envelope uses only SyncReportPageCursor's fields, so the shapes are the SDK's, not ours.
Each report answers in two pages (when it has two rows or more), an unknown key gets a 401,
and `rate_limit_once` makes the next request a 429 with retry-after.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from anthropic.pagination import SyncReportPageCursor
from anthropic.types import AuthenticationError, ErrorResponse, RateLimitError
from anthropic.types.beta import BetaCacheCreation
from anthropic.types.beta.organization import BetaAnalyticsServerToolUse
from anthropic.types.beta.organization.analytics import (
    BetaAnalyticsCostGroup,
    BetaAnalyticsCostItem,
    BetaAnalyticsCostMetrics,
    BetaAnalyticsUsageGroup,
    BetaAnalyticsUsageItem,
    BetaAnalyticsUsageMetrics,
)

USAGE_PATH = "/v1/organizations/analytics/usage"
COST_PATH = "/v1/organizations/analytics/cost"
PAGE_FIELDS = set(SyncReportPageCursor.model_fields)


@dataclass
class Figures:
    """One model's day, as the fake reports it."""

    requests: int = 0
    uncached_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    output_tokens: int = 0
    amount_cents: str = "0"  # the cost report's `amount`: fractional cents, as a string


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float
    status: int = 200


@dataclass
class FakeAdminAPI:
    admin_key: str
    days: dict[tuple[date, str | None], Figures] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    rate_limits: list[str] = field(default_factory=list)  # retry-after values of the next 429s
    rate_limit_skip: int = 0  # requests answered normally before those 429s start
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def rate_limit_once(self, retry_after: str = "1", *, after: int = 0) -> None:
        """The next request (or the one after `after` good ones) gets a 429 with this retry-after."""
        self.rate_limits.append(retry_after)
        self.rate_limit_skip = after

    def report_requests(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    # --- answers, from the SDK's models -------------------------------------------------------

    def _rows(self, path: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        rows = []
        for (day, model), f in sorted(self.days.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            bucket = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if not start <= bucket < end:
                continue
            if path == USAGE_PATH:
                item: Any = BetaAnalyticsUsageItem(
                    starting_at=bucket,
                    ending_at=bucket + timedelta(days=1),
                    group=BetaAnalyticsUsageGroup(model=model),
                    usage=BetaAnalyticsUsageMetrics(
                        requests=f.requests,
                        uncached_input_tokens=f.uncached_input_tokens,
                        cache_read_input_tokens=f.cache_read_input_tokens,
                        output_tokens=f.output_tokens,
                        cache_creation=BetaCacheCreation(
                            ephemeral_5m_input_tokens=f.cache_creation_5m_input_tokens,
                            ephemeral_1h_input_tokens=f.cache_creation_1h_input_tokens,
                        ),
                        server_tool_use=BetaAnalyticsServerToolUse(web_search_requests=0),
                        total_tokens=f.uncached_input_tokens
                        + f.cache_read_input_tokens
                        + f.output_tokens
                        + f.cache_creation_5m_input_tokens
                        + f.cache_creation_1h_input_tokens,
                    ),
                )
            else:
                item = BetaAnalyticsCostItem(
                    starting_at=bucket,
                    ending_at=bucket + timedelta(days=1),
                    group=BetaAnalyticsCostGroup(model=model),
                    cost=BetaAnalyticsCostMetrics(
                        amount=f.amount_cents, list_amount=f.amount_cents, currency="USD", requests=f.requests
                    ),
                )
            rows.append(item.to_dict(mode="json"))
        return rows

    def answer(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        if self.rate_limits and self.rate_limit_skip > 0:
            self.rate_limit_skip -= 1
        elif self.rate_limits:
            retry_after = self.rate_limits.pop(0)
            body = ErrorResponse(
                type="error",
                error=RateLimitError(
                    type="rate_limit_error", message="Number of requests has exceeded your rate limit"
                ),
                request_id="req_fake_429",
            )
            return 429, {"retry-after": retry_after}, body.to_dict(mode="json")
        auth = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if auth != self.admin_key:
            body = ErrorResponse(
                type="error",
                error=AuthenticationError(type="authentication_error", message="invalid x-api-key"),
                request_id="req_fake_401",
            )
            return 401, {}, body.to_dict(mode="json")
        if path not in (USAGE_PATH, COST_PATH):
            return 404, {}, {"type": "error", "error": {"type": "not_found_error", "message": path}}
        start = datetime.fromisoformat(query["starting_at"][0])
        end = datetime.fromisoformat(query["ending_at"][0])
        rows = self._rows(path, start, end)
        # Two pages whenever there are two rows or more, whatever `limit` asked: the client
        # must follow the cursor.
        half = (len(rows) + 1) // 2
        if query.get("page") == ["page-2"]:
            page = {"data": rows[half:], "has_more": False, "next_page": None}
        else:
            more = len(rows) > half
            page = {"data": rows[:half], "has_more": more, "next_page": "page-2" if more else None}
        page["data_refreshed_at"] = "2026-12-03T06:00:00Z"
        assert set(page) <= PAGE_FIELDS
        return 200, {}, page


def start_fake(admin_key: str) -> FakeAdminAPI:
    fake = FakeAdminAPI(admin_key=admin_key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            headers = {k.lower(): v for k, v in self.headers.items()}
            record = Request(path=parts.path, query=query, headers=headers, at=time.monotonic())
            fake.requests.append(record)
            status, extra, body = fake.answer(parts.path, query, headers)
            record.status = status
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=fake.server.serve_forever, daemon=True).start()
    return fake
