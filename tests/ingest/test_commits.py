"""The durability promises of POST /api/v1/events on real commits: autocommit single events,
batches, racing posts, revoked keys remembered by a process, a dead kept connection."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest
from django.db import connection
from django.test import Client

from projects.services import ingest_key_create, ingest_key_revoke
from tests.conftest import committed_event_count

http = Client()


def ev(request_id: str, **fields):  # type: ignore[no-untyped-def]
    return {"request_id": request_id, "model": "claude-haiku-4-5", "latency_ms": 100, "input_tokens": 10, **fields}


def post(client: Client, secret: str | None, body, **extra):  # type: ignore[no-untyped-def]
    if secret is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/v1/events", data, content_type=extra.pop("CONTENT_TYPE", "application/json"), **extra)


@pytest.mark.usefixtures("clean_events")
def test_a_202_means_committed_for_single_events_and_batches():
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    assert post(http, secret, ev("c-one")).json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert committed_event_count(["c-one"]) == 1
    ids = [f"c{i}" for i in range(100)]
    assert post(http, secret, {"events": [ev(i) for i in ids]}).json()["accepted"] == 100
    assert committed_event_count(ids) == 100
    # A re-send with one new event: only the new event is stored.
    again = post(http, secret, {"events": [ev(i) for i in [*ids, "c-new"]]}).json()
    assert again == {"accepted": 1, "duplicates": 100, "rejected": []}
    assert committed_event_count([*ids, "c-new"]) == 101
    assert post(http, secret, ev("c-one")).json() == {"accepted": 0, "duplicates": 1, "rejected": []}


@pytest.mark.usefixtures("clean_events")
@pytest.mark.parametrize("size", [1, 10, 200])
def test_racing_posts_of_the_same_events_store_each_once(size):
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    ids = [f"race{size}-{i}" for i in range(size)]
    body = ev(ids[0]) if size == 1 else {"events": [ev(i) for i in ids]}
    results: list[dict] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        own = Client()
        barrier.wait()
        results.append(post(own, secret, body).json())
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
    assert post(http, created.secret, ev("k0")).status_code == 202  # now remembered
    ingest_key_revoke(key=created.key)
    assert post(http, created.secret, ev("k1")).status_code == 401
    assert post(http, created.secret, {"events": [ev(f"k{i}") for i in range(2, 100)]}).status_code == 401
    assert post(http, created.secret, {"events": [ev("k100"), ev("k101")]}).status_code == 401
    # Answers other than 202 re-check the key too.
    assert post(http, created.secret, b"{nope").status_code == 401
    assert post(http, created.secret, ev("k102"), CONTENT_TYPE="text/plain").status_code == 401
    assert post(http, created.secret, ev("k103", latency_ms=-1)).status_code == 401
    assert committed_event_count([f"k{i}" for i in range(104)]) == 1


@pytest.mark.usefixtures("clean_events")
def test_a_kept_connection_that_died_is_replaced_without_an_error():
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    assert post(http, secret, ev("d0")).status_code == 202
    pid = connection.connection.info.backend_pid
    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"],
        port=s["PORT"],
        user=s["USER"],
        dbname=s["NAME"],
        password=s["PASSWORD"] or None,
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    resp = post(http, secret, ev("d1"))
    assert resp.status_code == 202, resp.content
    assert committed_event_count(["d0", "d1"]) == 2
