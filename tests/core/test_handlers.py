"""config/wsgi.py serves POST /api/v1/events through core.handlers.ViewHandler (the ingest view
behind MIDDLEWARE less the page-only middleware); everything else through Django's full stack.
The two must answer every ingest request alike: same status, body and headers, but for the
headers only HTML needs (CSP, X-Frame-Options). And core/middleware.py's cheaper CSP and messages
middleware must behave as the stock ones do."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from csp.constants import NONCE, SELF
from csp.middleware import CSPMiddleware as StockCSPMiddleware
from csp.utils import build_policy
from django.contrib.messages import get_messages
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory

from config import wsgi
from core.handlers import ViewHandler
from core.middleware import CSPMiddleware, MessageMiddleware

PAGE_ONLY_HEADERS = {"content-security-policy", "x-frame-options"}
NOW = datetime.now(tz=UTC).isoformat()


def call(handler: Callable[..., Any], environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer.append((int(status.split()[0]), {k.lower(): v for k, v in headers}))

    result = handler(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    status, headers = answer[0]
    return status, headers, body


def environ(
    method: str = "POST",
    body: bytes = b"",
    *,
    secret: str | None = None,
    path: str = "/api/v1/events",
    **extra: str,
) -> dict[str, Any]:
    """A fresh WSGI environ (its body can be read once) as a server would pass it."""
    headers = {"HTTP_X_REQUEST_ID": "parity-test", **extra}
    if secret is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    content_type = headers.pop("CONTENT_TYPE", "application/json")
    request = RequestFactory().generic(method, path, data=body, content_type=content_type, **headers)
    return request.environ


def event(request_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "timestamp": NOW,
        "model": "claude-sonnet-4-6",
        "latency_ms": 5,
        "input_tokens": 10,
        **fields,
    }


def test_the_application_routes_only_the_exact_ingest_path_to_the_lean_handler():
    assert wsgi.INGEST_PATH == "/api/v1/events"
    _, ingest_headers, _ = call(wsgi.application, environ("GET"))
    _, page_headers, _ = call(wsgi.application, environ("GET", path="/healthz"))
    _, slash_headers, _ = call(wsgi.application, environ("GET", path="/api/v1/events/"))
    assert "x-frame-options" not in ingest_headers
    assert page_headers["x-frame-options"] == "DENY"
    assert slash_headers["x-frame-options"] == "DENY"  # not the ingest route: the full stack


@pytest.mark.django_db(transaction=True)
def test_every_kind_of_ingest_answer_is_the_same_through_both_handlers(ingest_key, clean_events, settings):
    secret, _ = ingest_key
    big = b"x" * (settings.TALLY_INGEST_MAX_BODY_BYTES + 1)
    cases: list[tuple[str, Callable[[str], dict[str, Any]], int]] = [
        ("one event", lambda run: environ(body=json.dumps(event(f"{run}-a")).encode(), secret=secret), 202),
        ("its duplicate", lambda run: environ(body=json.dumps(event(f"{run}-a")).encode(), secret=secret), 202),
        (
            "a batch with a bad event",
            lambda run: environ(
                body=json.dumps({"events": [event(f"{run}-b"), event(f"{run}-c", input_tokens=-1)]}).encode(),
                secret=secret,
            ),
            202,
        ),
        (
            "gzip",
            lambda run: environ(
                body=gzip.compress(json.dumps(event(f"{run}-d")).encode()), secret=secret, HTTP_CONTENT_ENCODING="gzip"
            ),
            202,
        ),
        ("no key", lambda run: environ(body=json.dumps(event(f"{run}-e")).encode()), 401),
        ("unknown key", lambda run: environ(body=b"{}", secret="tly_nope"), 401),
        ("malformed JSON", lambda run: environ(body=b'{"request_id": ', secret=secret), 400),
        ("wrong shape", lambda run: environ(body=b"[1, 2]", secret=secret), 400),
        ("text/plain", lambda run: environ(body=b"{}", secret=secret, CONTENT_TYPE="text/plain"), 415),
        ("too large", lambda run: environ(body=big, secret=secret), 413),
        ("GET", lambda run: environ("GET", secret=secret), 405),
        ("a host not allowed", lambda run: environ(body=b"{}", secret=secret, HTTP_HOST="evil.example"), 400),
        ("a NUL in the query", lambda run: environ(body=b"{}", secret=secret, QUERY_STRING="x=%00"), 400),
    ]
    for name, make, status in cases:
        answers = {}
        for label, handler in (("lean", wsgi.ingest), ("full", wsgi.pages)):
            code, headers, body = call(handler, make(label))
            answers[label] = (code, {k: v for k, v in headers.items() if k not in PAGE_ONLY_HEADERS}, body)
            assert code == status, (name, label, body)
        (_, lean_headers, lean_body), (_, full_headers, full_body) = answers["lean"], answers["full"]
        assert lean_headers == full_headers, name
        # Request ids differ by run label; the answers' shapes and counts do not.
        assert lean_body.replace(b"lean", b"RUN") == full_body.replace(b"full", b"RUN"), name
    assert lean_headers["x-content-type-options"] == "nosniff"
    assert lean_headers["x-request-id"] == "parity-test"


def test_the_handler_refuses_middleware_whose_hooks_need_url_resolution():
    with pytest.raises(ImproperlyConfigured, match="CsrfViewMiddleware has process_view"):
        ViewHandler(lambda request: HttpResponse(), ["django.middleware.csrf.CsrfViewMiddleware"])


def csp_of(middleware: Any, response: HttpResponse, *, nonce: bool = False) -> str:
    request = RequestFactory().get("/")
    middleware.process_request(request)
    if nonce:
        str(request.csp_nonce)  # what {{ request.csp_nonce }} in a template does
        request._csp_nonce = "fixed-nonce"
    return str(middleware.process_response(request, response)["Content-Security-Policy"])


def test_the_csp_header_is_the_one_django_csp_writes_in_every_case(settings):
    def updated() -> HttpResponse:
        response = HttpResponse()
        response._csp_update = {"img-src": ["https://img.example"]}  # what @csp_update sets
        return response

    ours, stock = CSPMiddleware(HttpResponse), StockCSPMiddleware(HttpResponse)
    assert csp_of(ours, HttpResponse()) == build_policy() == csp_of(stock, HttpResponse())
    assert "script-src 'self'" in build_policy()
    assert "https://img.example" in csp_of(ours, updated()) == csp_of(stock, updated())
    assert csp_of(ours, HttpResponse(), nonce=True) == csp_of(stock, HttpResponse(), nonce=True)

    directives = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {**directives, "script-src": [SELF, NONCE]}}
    ours, stock = CSPMiddleware(HttpResponse), StockCSPMiddleware(HttpResponse)
    assert (
        "'nonce-fixed-nonce'" in csp_of(ours, HttpResponse(), nonce=True) == csp_of(stock, HttpResponse(), nonce=True)
    )


def test_messages_are_stored_when_added_and_left_alone_when_untouched(rf):
    middleware = MessageMiddleware(lambda request: HttpResponse())
    request = rf.get("/")
    middleware.process_request(request)
    untouched = middleware.process_response(request, HttpResponse())
    assert "messages" not in untouched.cookies

    request = rf.get("/")
    request.session = {}
    middleware.process_request(request)
    from django.contrib import messages

    messages.success(request, "Key tly_ab… is revoked.")
    added = middleware.process_response(request, HttpResponse())
    assert "messages" in added.cookies  # settings: cookie storage first, session as fallback

    request = rf.get("/", HTTP_COOKIE=f"messages={added.cookies['messages'].value}")
    request.session = {}
    middleware.process_request(request)
    assert [str(m) for m in get_messages(request)] == ["Key tly_ab… is revoked."]
