"""config.wsgi serves `POST /api/v1/events` through core.handlers.RouteHandler (INGEST_MIDDLEWARE,
no URL resolution) and every other path through Django's usual handler. These call the WSGI
application itself, as granian does; tests/devserver/test_web.py posts through the real server.

Transactional: Django's request_finished signal closes a connection left inside a transaction
(close_old_connections), which Django's own test client avoids by disconnecting it."""

from __future__ import annotations

import json

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection
from werkzeug.test import Client as WsgiClient

from config.wsgi import application, ingest_application
from core.handlers import RouteHandler
from ingest.views import events_post

EVENT = {"request_id": "route-1", "model": "claude-sonnet-4-6", "latency_ms": 812, "input_tokens": 1200}


def _post(secret: str, body: dict[str, object] = EVENT, **kwargs):  # type: ignore[no-untyped-def]
    return WsgiClient(application).post(
        "/api/v1/events",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "trace-7", **kwargs.pop("headers", {})},
        content_type="application/json",
        **kwargs,
    )


def _stored(request_id: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ingest_event WHERE request_id = %s", [request_id])
        return int(cursor.fetchone()[0])


def test_an_event_posted_through_the_route_handler(clean_events, ingest_key):
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
    # Django's request cycle: its signals, and the API's headers from the kept middleware.
    assert seen == ["started", "finished"]
    assert resp.headers["X-Request-ID"] == "trace-7"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert resp.headers["Content-Type"] == "application/json"
    # The pages' middleware is not in the path: no session, CSRF cookie or page headers.
    assert "Set-Cookie" not in resp.headers
    assert "Content-Security-Policy" not in resp.headers
    assert "X-Frame-Options" not in resp.headers


def test_the_route_keeps_djangos_host_check_method_check_and_nul_check(clean_events, ingest_key):
    secret, _ = ingest_key
    assert _post(secret, headers={"Host": "evil.example"}).status_code == 400
    assert _stored("route-1") == 0
    resp = WsgiClient(application).get("/api/v1/events")
    assert (resp.status_code, resp.headers["Allow"]) == (405, "POST")
    resp = _post(secret, query_string="service=a%00b")
    assert resp.status_code == 400
    assert resp.json == {"error": "service: must not contain a NUL character", "field": "service"}
    assert _stored("route-1") == 0


def test_other_paths_go_through_the_full_stack(transactional_db):
    resp = WsgiClient(application).get("/login")
    assert resp.status_code == 200
    assert "Content-Security-Policy" in resp.headers
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "csrftoken" in resp.headers.get("Set-Cookie", "")
    # A path beside the route is not the route: Django resolves it (and finds nothing).
    assert WsgiClient(application).post("/api/v1/events/", data=b"{}").status_code == 404


def test_the_route_handler_serves_its_view_with_its_middleware_only():
    assert ingest_application.match.func is events_post
    assert ingest_application.middleware == (
        "core.observability.RequestIdMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "core.http.ApiNulParameterMiddleware",
        "django.middleware.common.CommonMiddleware",
    )


def test_middleware_with_hooks_the_handler_would_skip_is_refused():
    with pytest.raises(TypeError, match="CsrfViewMiddleware has process_view"):
        RouteHandler(events_post, route="x", middleware=["django.middleware.csrf.CsrfViewMiddleware"])
