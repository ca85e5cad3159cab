"""core/middleware.py's CSP and messages middleware skip work the stock ones do on every
response; what they write must be what the stock ones write."""

from __future__ import annotations

from typing import Any

from csp.constants import NONCE, SELF
from csp.middleware import CSPMiddleware as StockCSPMiddleware
from csp.utils import build_policy
from django.contrib.messages import get_messages
from django.http import HttpResponse
from django.test import RequestFactory

from core.middleware import CSPMiddleware, MessageMiddleware


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
