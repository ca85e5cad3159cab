"""`POST /api/v1/events` from the web server straight to the ingest handler: Django's request,
without its middleware chain, URL resolution and response objects.

This is the one route that takes every API call of every service. Why a path of its own
(bench/ingest.py; bench/RESULTS.md, 2026-12-03 evening): through Django's usual handler, and
also through a handler with only the four middleware this route needs (tried, then removed),
single events missed the 1,500 req/s of issue 13 on the 2-core machine: 1,188 req/s in a full
run, against 1,683 for this path in the run beside it, and 1,301-1,620 against 1,646-1,867 in
single-event runs taken in turns. Django's request cycle was about a quarter of a single event's
CPU, server, PostgreSQL and clients together.

What it keeps from Django, and how:
- The request is Django's `WSGIRequest`: `get_host()` checks the Host against ALLOWED_HOSTS,
  `is_secure()` honours SECURE_PROXY_SSL_HEADER, and the body is read through it.
- SecurityMiddleware runs its own request check (the HTTPS redirect) and makes the security
  headers: once per process for plain and for secure requests, since they depend on nothing else.
- request_started and request_finished are sent, so Django's connection housekeeping runs.
- An exception gets Django's answer (`response_for_exception`: a bad Host is a 400 logged on
  django.security, anything else a 500), and every 4xx/5xx is logged by `log_response` on
  django.request, as Django's handler does.
- The request ID and the latency histogram are core.observability's, as RequestIdMiddleware's.

Anything but a plain POST (another method; any query string, which the API's NUL check reads)
goes to Django's usual handler, and so does everything Django's test client sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from django.core import signals
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware
from django.utils.log import log_response

from core.caches import process_cache
from core.observability import INGEST_SECONDS, REQUEST_ID, request_id_for
from ingest.views import events_post_reply, reply_response

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# "middleware": the SecurityMiddleware; False / True: its headers for a plain / secure request.
_security: dict[object, Any] = {}


@process_cache
def _security_forget() -> None:
    _security.clear()


def _security_middleware() -> SecurityMiddleware:
    """Django's SecurityMiddleware as settings have it now (tests change them; a process does not)."""
    if "middleware" not in _security:
        _security["middleware"] = SecurityMiddleware(lambda request: HttpResponse())
    middleware: SecurityMiddleware = _security["middleware"]
    return middleware


def _security_headers(request: HttpRequest) -> list[tuple[str, str]]:
    """The headers SecurityMiddleware adds to an answer to `request`: made by it, once for plain
    and once for secure requests (HSTS is for secure ones only)."""
    secure = request.is_secure()
    headers: list[tuple[str, str]] | None = _security.get(secure)
    if headers is None:
        blank = HttpResponse()
        before = set(blank.headers)
        made = _security_middleware().process_response(request, blank)
        headers = _security[secure] = [(k, v) for k, v in made.items() if k not in before]
    return headers


class _Answer(list[bytes]):
    """The body as the server iterates it; closing it ends the request as Django's response does."""

    def __init__(self, body: bytes, request: HttpRequest) -> None:
        super().__init__([body])
        self.request = request

    def close(self) -> None:
        self.request.close()
        signals.request_finished.send(sender=_Answer)


def ingest_application(django_application: WSGIApp, path: str) -> WSGIApp:
    """A WSGI application answering plain POSTs to `path` itself and passing every other request
    to `django_application`."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != path or environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING"):
            return django_application(environ, start_response)
        started = time.perf_counter()
        signals.request_started.send(sender=_Answer, environ=environ)
        request = WSGIRequest(environ)
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        token = REQUEST_ID.set(request_id)
        try:
            try:
                request.get_host()  # DisallowedHost unless ALLOWED_HOSTS has it
                response: HttpResponse | None = _security_middleware().process_request(request)
                reply = events_post_reply(request) if response is None else None
            except Exception as exc:  # noqa: BLE001 - Django's handler turns any exception into its answer
                response, reply = response_for_exception(request, exc), None
            logged: HttpResponse | None = response  # what django.request logs for a 4xx/5xx
            if reply is not None:
                status, body = reply.status, reply.body
                headers = [("Content-Type", "application/json")]
                if reply.retry_after is not None:
                    headers.append(("Retry-After", str(reply.retry_after)))
                logged = reply_response(reply) if status >= 400 else None
            else:  # Django's own answer: the HTTPS redirect, or an exception's
                assert response is not None
                status, body = response.status_code, response.content
                headers = [(k, v) for k, v in response.items() if k != "Content-Length"]
            if logged is not None and status >= 400:
                log_response("%s: %s", logged.reason_phrase, path, response=logged, request=request)
            headers += [("Content-Length", str(len(body))), ("X-Request-ID", request_id), *_security_headers(request)]
            start_response(f"{status} {HTTPStatus(status).phrase}", headers)
            INGEST_SECONDS.observe(time.perf_counter() - started)
            return _Answer(body, request)
        finally:
            REQUEST_ID.reset(token)

    return application
