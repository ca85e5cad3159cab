"""A lean WSGI app for `POST /api/v1/events`, in front of Django (config/wsgi.py).

Ingest authenticates by bearer key and never by session, so Django's session, CSRF, auth,
messages, static files and URL resolving do nothing for it but cost time: about 0.5 ms per
request, more than the rest of a single-event post. This app answers that one URL and method
with `ingest.endpoint.events_post_handle`, the same function the Django view calls, and hands
every other request to Django untouched.

What the middleware would have done to these responses is done here too, and
tests/ingest/test_wsgi.py compares both paths' headers and bodies:
- an `X-Request-ID` (the caller's if sane), set for the logs while the request runs, and the
  `tally_ingest_request_seconds` histogram (core.observability);
- the security headers (nosniff, Referrer-Policy, Cross-Origin-Opener-Policy, HSTS on https,
  X-Frame-Options, Content-Security-Policy);
- ALLOWED_HOSTS: a request for another host goes to Django, which refuses it;
- Django's end-of-request database housekeeping (`request_finished`, whose receiver closes a
  connection past CONN_MAX_AGE or broken by an error), sent when there is something to do
  rather than on every request. The start-of-request health check (a SELECT 1 per request)
  is replaced by a retry on a fresh connection when a kept one turns out dead
  (`ingest.services._store_one`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core import signals
from django.db import DEFAULT_DB_ALIAS, connections
from django.http.request import split_domain_port, validate_host
from django.utils.http import parse_header_parameters

from core.observability import INGEST_SECONDS, REQUEST_ID
from ingest.endpoint import Reply, events_post_handle

logger = logging.getLogger("django.request")

PATH = "/api/v1/events"
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _static_headers() -> list[tuple[str, str]]:
    """The headers Django's middleware adds to every response of this endpoint (settings-driven)."""
    from csp.constants import HEADER, HEADER_REPORT_ONLY
    from csp.utils import build_policy

    headers = [("Content-Type", "application/json")]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        headers.append(("Referrer-Policy", ",".join(
            [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))
    if getattr(settings, "CONTENT_SECURITY_POLICY", None):
        headers.append((HEADER, build_policy()))
    if getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None):
        headers.append((HEADER_REPORT_ONLY, build_policy(report_only=True)))
    return headers


def _hsts() -> tuple[str, str] | None:
    if not settings.SECURE_HSTS_SECONDS:
        return None
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return ("Strict-Transport-Security", value)


def _is_secure(environ: dict[str, Any]) -> bool:
    """HttpRequest.is_secure()."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = environ.get(header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return environ.get("wsgi.url_scheme") == "https"


def _reason(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class IngestApp:
    """WSGI: POST /api/v1/events here, everything else to `django_app`."""

    def __init__(self, django_app: WsgiApp) -> None:
        self.django_app = django_app
        self._headers: list[tuple[str, str]] | None = None
        self._hosts: dict[str, bool] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST"
                or environ.get("SCRIPT_NAME") or not self._host_allowed(environ)):
            return self.django_app(environ, start_response)
        return self._events_post(environ, start_response)

    def _host_allowed(self, environ: dict[str, Any]) -> bool:
        """HttpRequest.get_host() would not raise DisallowedHost (else Django answers it)."""
        if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
            host = environ["HTTP_X_FORWARDED_HOST"]
        elif "HTTP_HOST" in environ:
            host = environ["HTTP_HOST"]
        else:
            return False  # rare (HTTP/1.0 without Host): let Django work it out
        allowed = self._hosts.get(host)
        if allowed is None:
            allowed_hosts = settings.ALLOWED_HOSTS
            if settings.DEBUG and not allowed_hosts:
                allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
            domain, _port = split_domain_port(host)
            allowed = bool(domain) and validate_host(domain, allowed_hosts)
            if len(self._hosts) < 1000:  # any client can send any Host
                self._hosts[host] = allowed
        return allowed

    def _events_post(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        try:
            try:
                reply = self._reply(environ)
            finally:
                db = connections[DEFAULT_DB_ALIAS]
                if db.connection is not None and (db.errors_occurred or (
                        db.close_at is not None and time.monotonic() >= db.close_at)):
                    signals.request_finished.send(sender=self.__class__)
            if self._headers is None:
                self._headers = _static_headers()
            headers = [*self._headers, ("Content-Length", str(len(reply.body))), ("X-Request-ID", request_id)]
            if reply.retry_after is not None:
                headers.append(("Retry-After", str(reply.retry_after)))
            if _is_secure(environ) and (hsts := _hsts()):
                headers.append(hsts)
            if 400 <= reply.status < 500:  # as Django's log_response (a 500 was logged with its traceback)
                logger.warning("%s: %s", HTTPStatus(reply.status).phrase, PATH, extra={"status_code": reply.status})
            elif reply.status > 500:
                logger.error("%s: %s", HTTPStatus(reply.status).phrase, PATH, extra={"status_code": reply.status})
            INGEST_SECONDS.observe(time.perf_counter() - started)
            start_response(_reason(reply.status), headers)
            return [reply.body]
        finally:
            REQUEST_ID.reset(token)

    @staticmethod
    def _reply(environ: dict[str, Any]) -> Reply:
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type != "application/json":
            content_type = parse_header_parameters(content_type)[0]
        try:
            return events_post_handle(
                authorization=environ.get("HTTP_AUTHORIZATION"), content_type=content_type,
                content_encoding=environ.get("HTTP_CONTENT_ENCODING"), content_length=environ.get("CONTENT_LENGTH"),
                read=environ["wsgi.input"].read,
            )
        except Exception:
            logger.exception("Internal Server Error: %s", PATH, extra={"status_code": 500})
            return Reply(500, b'{"error": "internal server error"}')
