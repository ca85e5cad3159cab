"""Ingest's promises that need real commits: 2xx means committed, racing duplicates store one
row, PostgreSQL down gives 503 (and nothing half-written)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from django.db import connection
from django.test import Client

from devserver.embedded import EmbeddedPostgres
from projects.services import ingest_key_create
from tests.conftest import committed_event_count, post_events


def ev(request_id: str) -> dict:
    return {"request_id": request_id, "model": "claude-haiku-4-5", "latency_ms": 100, "input_tokens": 10}


@pytest.mark.usefixtures("clean_events")
def test_a_202_means_the_events_are_committed(live_server):
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    ids = [f"c{i}" for i in range(50)]
    resp = httpx.post(
        f"{live_server.url}/api/v1/events",
        json={"events": [ev(i) for i in ids]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert resp.status_code == 202
    # Checked the instant the response arrives, from a connection of its own.
    assert committed_event_count(ids) == 50


@pytest.mark.usefixtures("clean_events")
def test_a_failed_commit_never_answers_2xx_and_stores_nothing(live_server):
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    with connection.cursor() as cursor:
        # A deferred constraint trigger fires at COMMIT: the commit itself fails.
        cursor.execute(
            "CREATE FUNCTION tally_fail_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected commit failure'; END $$;"
            "CREATE CONSTRAINT TRIGGER tally_fail_commit AFTER INSERT ON ingest_dirtyhour "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tally_fail_commit();"
        )
    try:
        resp = httpx.post(
            f"{live_server.url}/api/v1/events",
            json={"events": [ev("f1"), ev("f2")]},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert resp.status_code >= 500
        assert committed_event_count(["f1", "f2"]) == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER tally_fail_commit ON ingest_dirtyhour; DROP FUNCTION tally_fail_commit();")
    # The same events go through once the fault is gone: nothing was half-written.
    resp = httpx.post(
        f"{live_server.url}/api/v1/events",
        json={"events": [ev("f1"), ev("f2")]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert resp.json() == {"accepted": 2, "duplicates": 0, "rejected": []}


@pytest.mark.usefixtures("clean_events")
def test_racing_duplicate_posts_store_one_row_each(live_server):
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    body = {"events": [ev(f"race{i}") for i in range(200)]}
    results: list[dict] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            resp = http.post(
                f"{live_server.url}/api/v1/events", json=body, headers={"Authorization": f"Bearer {secret}"}
            )
            results.append(resp.json())

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert sum(r["accepted"] for r in results) == 200
    assert sum(r["duplicates"] for r in results) == 7 * 200
    assert committed_event_count([f"race{i}" for i in range(200)]) == 200


@pytest.mark.skipif(
    not os.environ.get("TALLY_EMBEDDED_PGDATA"),
    reason="needs the embedded PostgreSQL (DATABASE_URL points elsewhere), to stop it",
)
@pytest.mark.usefixtures("clean_events")
def test_database_down_is_503_with_retry_after_then_recovers():
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    client = Client()
    assert post_events(client, secret, ev("up1")).status_code == 202
    pg = EmbeddedPostgres(Path(os.environ["TALLY_EMBEDDED_PGDATA"]).parent)
    port = urlparse(os.environ["DATABASE_URL"]).port
    pg.stop()
    try:
        resp = post_events(client, secret, {"events": [ev("down1"), ev("down2")]})
        assert resp.status_code == 503
        assert resp["Retry-After"] == "5"
        assert "database unavailable" in resp.json()["error"]
    finally:
        pg.start(port_wanted=port)
    resp = post_events(client, secret, {"events": [ev("down1"), ev("down2")]})
    assert resp.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert committed_event_count(["up1", "down1", "down2"]) == 3
