"""The lean WSGI path for POST /api/v1/events (ingest/wsgi.py): the same answers, headers and
metrics as Django's, and the durability promises on real commits (autocommit single events,
COPY batches, racing posts, revoked keys remembered by a process, a dead kept connection)."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest
from django.db import connection

from config.wsgi import application, django_application
from projects.services import ingest_key_create, ingest_key_revoke
from tests.conftest import committed_event_count
from tests.ingest.wsgi_client import WsgiClient

lean = WsgiClient(application)
plain = WsgiClient(django_application)


def ev(request_id: str, **fields):  # type: ignore[no-untyped-def]
    return {"request_id": request_id, "model": "claude-haiku-4-5", "latency_ms": 100, "input_tokens": 10, **fields}


def post(client: WsgiClient, secret: str | None, body, **extra):  # type: ignore[no-untyped-def]
    if secret is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/v1/events", data, **extra)


def _headers(resp) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in resp.headers.items() if k != "x-request-id"}


CASES = [
    ("accepted", lambda n: [ev(f"h{n}")], {}),
    ("partial", lambda n: {"events": [ev(f"p{n}"), ev(f"q{n}", latency_ms="x")]}, {}),
    ("all bad", lambda n: ev(f"b{n}", latency_ms=-1), {}),
    ("shape", lambda n: b'{"events": []}', {}),
    ("not json", lambda n: b"{nope", {}),
    ("415", lambda n: ev(f"t{n}"), {"CONTENT_TYPE": "text/plain"}),
    ("401", lambda n: ev(f"u{n}"), {"HTTP_AUTHORIZATION": "Bearer nope"}),
]


@pytest.mark.parametrize(("name", "body", "extra"), CASES, ids=[c[0] for c in CASES])
def test_lean_path_answers_byte_for_byte_like_django(db, name, body, extra):
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    payload = body(1)
    payload = payload[0] if isinstance(payload, list) else payload
    django_resp = post(plain, secret, payload, **extra)
    payload = body(2)
    payload = payload[0] if isinstance(payload, list) else payload
    lean_resp = post(lean, secret, payload, **extra)
    assert lean_resp.reason == django_resp.reason
    assert _headers(lean_resp) == _headers(django_resp)
    assert lean_resp.content.replace(b"q2", b"q1") == django_resp.content.replace(b"q2", b"q1")


def test_https_gets_hsts_like_django(db, settings):
    assert settings.SECURE_HSTS_SECONDS  # (Django's middleware read it at start: not overridable here)
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    lean_resp = post(lean, secret, ev("s1"), **{"wsgi.url_scheme": "https"})
    django_resp = post(plain, secret, ev("s2"), **{"wsgi.url_scheme": "https"})
    assert lean_resp["Strict-Transport-Security"] == django_resp["Strict-Transport-Security"] == (
        f"max-age={settings.SECURE_HSTS_SECONDS}")
    assert _headers(lean_resp) == _headers(django_resp)
    assert not post(lean, secret, ev("s3")).has_header("Strict-Transport-Security")


def test_request_id_is_echoed_and_metrics_count_the_request(db):
    from core.observability import INGEST_SECONDS

    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    before = INGEST_SECONDS._sum.get()
    resp = post(lean, secret, ev("r1"), HTTP_X_REQUEST_ID="abc-123")
    assert resp.status_code == 202
    assert resp["X-Request-ID"] == "abc-123"
    assert INGEST_SECONDS._sum.get() > before
    assert len(post(lean, secret, ev("r2"))["X-Request-ID"]) == 32


def test_other_methods_paths_and_hosts_go_to_django(db):
    assert lean.get("/api/v1/events").status_code == 405
    assert lean.get("/healthz").status_code == 200
    assert lean.post("/api/v1/events/", b"{}").status_code == 404
    refused = lean.post("/api/v1/events", b"{}", HTTP_HOST="evil.example")
    assert refused.status_code == 400
    assert refused["Content-Type"].startswith("text/html")


# --- real commits ------------------------------------------------------------------------------




@pytest.mark.usefixtures("clean_events")
def test_a_202_means_committed_for_single_events_and_batches():
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    assert post(lean, secret, ev("c-one")).json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert committed_event_count(["c-one"]) == 1
    ids = [f"c{i}" for i in range(100)]  # over COPY_THRESHOLD: the COPY path
    assert post(lean, secret, {"events": [ev(i) for i in ids]}).json()["accepted"] == 100
    assert committed_event_count(ids) == 100
    # A re-send with one new event: the optimistic COPY meets the stored keys, the batch is
    # written again through the stage, and only the new event is stored.
    again = post(lean, secret, {"events": [ev(i) for i in [*ids, "c-new"]]}).json()
    assert again == {"accepted": 1, "duplicates": 100, "rejected": []}
    assert committed_event_count([*ids, "c-new"]) == 101
    assert post(lean, secret, ev("c-one")).json() == {"accepted": 0, "duplicates": 1, "rejected": []}


@pytest.mark.usefixtures("clean_events")
@pytest.mark.parametrize("size", [1, 10, 200])
def test_racing_posts_of_the_same_events_store_each_once(size):
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    ids = [f"race{size}-{i}" for i in range(size)]
    body = ev(ids[0]) if size == 1 else {"events": [ev(i) for i in ids]}
    results: list[dict] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        client = WsgiClient(application)
        barrier.wait()
        results.append(post(client, secret, body).json())
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["accepted"] for r in results) == size
    assert sum(r["duplicates"] for r in results) == 7 * size
    assert committed_event_count(ids) == size


@pytest.mark.usefixtures("clean_events")
def test_a_key_revoked_after_this_process_remembered_it_gets_401_and_stores_nothing():
    created = ingest_key_create(project_slug="acme", environment_name="prod")
    assert post(lean, created.secret, ev("k0")).status_code == 202  # now remembered
    ingest_key_revoke(key=created.key)
    assert post(lean, created.secret, ev("k1")).status_code == 401
    assert post(lean, created.secret, {"events": [ev(f"k{i}") for i in range(2, 100)]}).status_code == 401
    assert post(lean, created.secret, {"events": [ev("k100"), ev("k101")]}).status_code == 401
    # Answers other than 202 re-check the key too.
    assert post(lean, created.secret, b"{nope").status_code == 401
    assert post(lean, created.secret, ev("k102"), CONTENT_TYPE="text/plain").status_code == 401
    assert post(lean, created.secret, ev("k103", latency_ms=-1)).status_code == 401
    assert committed_event_count([f"k{i}" for i in range(104)]) == 1


@pytest.mark.usefixtures("clean_events")
def test_a_kept_connection_that_died_is_replaced_without_an_error():
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    assert post(lean, secret, ev("d0")).status_code == 202
    pid = connection.connection.info.backend_pid
    s = connection.settings_dict
    with psycopg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"],
                         password=s["PASSWORD"] or None, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    resp = post(lean, secret, ev("d1"))
    assert resp.status_code == 202, resp.content
    assert committed_event_count(["d0", "d1"]) == 2
