"""config.wsgi answers plain `POST /api/v1/events` through ingest/wsgi.py (Django's request, no
middleware chain) and everything else through Django's usual handler. These call the WSGI
application itself, as granian does; tests/devserver/test_web.py posts through the real server.

Transactional: Django's request_finished signal closes a connection left inside a transaction
(close_old_connections), which Django's own test client avoids by disconnecting it.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection
from django.test import Client
from werkzeug.test import Client as WsgiClient

from config.wsgi import application

pytestmark = pytest.mark.usefixtures("clean_events")

EVENT = {"request_id": "route-1", "model": "claude-sonnet-4-6", "latency_ms": 812, "input_tokens": 1200}
SECURITY = ("X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy", "Strict-Transport-Security")


def _post(secret: str, body: object = EVENT, **kwargs):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {secret}", "X-Request-ID": "trace-7", **kwargs.pop("headers", {})}
    return WsgiClient(application).post(
        "/api/v1/events", data=json.dumps(body), headers=headers, content_type="application/json", **kwargs
    )


def _stored(request_id: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ingest_event WHERE request_id = %s", [request_id])
        return int(cursor.fetchone()[0])


def test_an_event_posted_through_the_fast_path(ingest_key):
    secret, _ = ingest_key
    seen: list[str] = []

    def started(**kwargs: object) -> None:
        seen.append("started")

    def finished(**kwargs: object) -> None:
        seen.append("finished")

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        resp = _post(secret)
        assert resp.status_code == 202
        assert resp.get_data() == b'{"accepted": 1, "duplicates": 0, "rejected": []}'
        resp.close()  # the server closes the answer once sent: request_finished
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    assert _stored("route-1") == 1
    assert seen == ["started", "finished"]
    assert resp.headers["X-Request-ID"] == "trace-7"
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Content-Length"] == "48"
    # No session, CSRF cookie or page headers: the pages' middleware is not in the path.
    assert "Set-Cookie" not in resp.headers
    assert "Content-Security-Policy" not in resp.headers
    assert "X-Frame-Options" not in resp.headers


def test_the_security_headers_are_the_ones_django_gives_the_view(ingest_key, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    secret, _ = ingest_key
    for secure in (False, True):
        scheme = "https" if secure else "http"
        fast = _post(secret, {**EVENT, "request_id": f"sec-{scheme}"}, base_url=f"{scheme}://localhost")
        django = Client().post(
            "/api/v1/events",
            data=json.dumps({**EVENT, "request_id": f"sec-django-{scheme}"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
            secure=secure,
        )
        assert (fast.status_code, django.status_code) == (202, 202)
        expected = {name: django.headers[name] for name in SECURITY if name in django.headers}
        assert {name: fast.headers[name] for name in SECURITY if name in fast.headers} == expected
        assert ("Strict-Transport-Security" in expected) is secure
    assert expected["X-Content-Type-Options"] == "nosniff"


def test_a_bad_host_is_djangos_400_and_stores_nothing(ingest_key, caplog):
    secret, _ = ingest_key
    with caplog.at_level(logging.ERROR, logger="django.security.DisallowedHost"):
        resp = _post(secret, headers={"Host": "evil.example"})
    assert resp.status_code == 400
    assert resp.headers["X-Request-ID"] == "trace-7"
    assert [r.name for r in caplog.records if r.name.startswith("django.security")] == [
        "django.security.DisallowedHost"
    ]
    assert _stored("route-1") == 0


def test_a_refused_post_is_logged_as_djangos_handler_logs_it(caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        resp = _post("tly_not-a-key")
    assert resp.status_code == 401
    assert resp.json == {"error": "missing, unknown or revoked ingest key (Authorization: Bearer <key>)"}
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [(r.levelname, r.status_code, r.getMessage()) for r in records] == [  # type: ignore[attr-defined]
        ("WARNING", 401, "Unauthorized: /api/v1/events")
    ]


def test_an_exception_is_djangos_500(ingest_key, monkeypatch, caplog):
    secret, _ = ingest_key

    def broken(request: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("ingest.wsgi.events_post_reply", broken)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        resp = _post(secret)
    assert resp.status_code == 500
    assert resp.headers["X-Request-ID"] == "trace-7"
    assert [(r.levelname, r.exc_info[1].args) for r in caplog.records if r.name == "django.request"] == [
        ("ERROR", ("boom",))
    ]


def test_the_https_redirect_is_djangos(ingest_key, settings):
    settings.SECURE_SSL_REDIRECT = True
    secret, _ = ingest_key
    resp = _post(secret)
    assert (resp.status_code, resp.headers["Location"]) == (301, "https://localhost/api/v1/events")
    assert _stored("route-1") == 0


def test_other_methods_query_strings_and_paths_go_through_django(ingest_key):
    secret, _ = ingest_key
    resp = WsgiClient(application).get("/api/v1/events")
    assert (resp.status_code, resp.headers["Allow"]) == (405, "POST")
    resp = _post(secret, query_string="service=a%00b")
    assert resp.json == {"error": "service: must not contain a NUL character", "field": "service"}
    assert _post(secret, query_string="x=1").status_code == 202  # answered by the view, with its middleware
    assert "csrftoken" in WsgiClient(application).get("/login").headers.get("Set-Cookie", "")
    assert WsgiClient(application).post("/api/v1/events/", data=b"{}").status_code == 404
