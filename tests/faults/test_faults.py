"""Faults lose nothing: each test ends with zero accepted events lost and verify_rollups clean.

- a Celery worker killed with SIGKILL in the middle of a rollup;
- Redis stopped during ingest (ingest keeps answering 2xx; aggregates catch up after);
- PostgreSQL restarted during a stream of batches from tally_client (503 + Retry-After,
  no partial batch, tally_client re-sends, every event arrives once).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from devserver.embedded import EmbeddedPostgres, EmbeddedRedis
from projects.services import ingest_key_create
from rollups import services as rollup_services
from rollups.models import HourlyAggregate
from rollups.services import rollup_until_current, rollups_verify
from tests.rollups.helpers import ingest
from tests.rollups.test_end_to_end import ROOT, _database_url, celery_processes  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_events")]
EMBEDDED = pytest.mark.skipif(
    not (os.environ.get("TALLY_EMBEDDED_PGDATA") and os.environ.get("TALLY_EMBEDDED_REDIS_DIR")),
    reason="needs the embedded PostgreSQL and Redis (make test starts them), to stop and restart them",
)
NOW = datetime.now(tz=UTC)


def _total_requests() -> int:
    return sum(HourlyAggregate.objects.values_list("requests", flat=True))


def _raw_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT request_id) FROM ingest_event")
        total, distinct = cursor.fetchone()
    assert total == distinct, "an event was stored twice"
    return int(total)


def _other_connection():  # type: ignore[no-untyped-def]
    s = connection.settings_dict
    return psycopg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"], autocommit=True)


def test_worker_killed_mid_rollup_loses_nothing(transactional_db, tmp_path):
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    hour = (NOW - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    events = [
        {
            "request_id": f"k{i}",
            "model": "claude-haiku-4-5",
            "latency_ms": 10 + i,
            "input_tokens": 100,
            "timestamp": (hour + timedelta(seconds=i)).isoformat(),
        }
        for i in range(300)
    ]
    assert ingest(key, events).accepted == 300
    # Hold the advisory lock the rollup takes for that hour: the worker will claim the
    # markers and then wait, in the middle of its transaction.
    lock = rollup_services._lock_key(rollup_services._HOUR_LOCK_CLASS, key.project_id, int(hour.timestamp()) // 3600)
    holder = _other_connection()
    holder.execute("SELECT pg_advisory_lock(%s)", [lock])
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "SECRET_KEY": settings.SECRET_KEY,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    worker = subprocess.Popen(  # the same service the Celery task runs, in a process we can kill
        [sys.executable, "manage.py", "rollup"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]
            if waiting:
                break
            time.sleep(0.1)
        assert waiting, "the rollup never reached the locked hour"
        claimed = holder.execute("SELECT count(*) FROM ingest_dirtyhour").fetchone()[0]
        assert claimed >= 1  # its DELETE of the markers is not committed, so others still see them
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        holder.execute("SELECT pg_advisory_unlock(%s)", [lock])
        holder.close()
    # The orphaned transaction rolls back when PostgreSQL notices the client is gone; the next
    # pass then finds the markers again.
    rollup_until_current(timeout_s=60)
    assert _raw_count() == 300
    assert _total_requests() == 300
    assert rollups_verify().differences == []


@EMBEDDED
def test_redis_stopped_during_ingest_keeps_2xx_and_aggregates_catch_up(live_server, celery_processes):  # noqa: F811
    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    redis = EmbeddedRedis(Path(os.environ["TALLY_EMBEDDED_REDIS_DIR"]).parent)
    port = urlparse(settings.CELERY_BROKER_URL).port

    def post(prefix: str, n: int) -> None:
        events = [
            {
                "request_id": f"{prefix}{i}",
                "model": "claude-haiku-4-5",
                "latency_ms": 20,
                "input_tokens": 1000,
                "timestamp": (NOW - timedelta(minutes=i % 50)).isoformat(),
            }
            for i in range(n)
        ]
        for start in range(0, n, 50):
            resp = httpx.post(
                f"{live_server.url}/api/v1/events",
                json={"events": events[start : start + 50]},
                headers={"Authorization": f"Bearer {secret}"},
                timeout=30,
            )
            assert resp.status_code == 202, resp.text
            assert resp.json()["accepted"] == len(events[start : start + 50])

    post("before", 100)
    redis.stop()
    try:
        post("during", 400)  # the rate limiter fails open; nothing needs Redis to accept events
    finally:
        redis.start(port_wanted=port)
    post("after", 100)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _total_requests() < 600:
        time.sleep(0.5)
    assert _raw_count() == 600
    assert _total_requests() == 600
    rollup_until_current()
    assert rollups_verify().differences == []


@EMBEDDED
def test_postgres_restart_during_a_batch_stream_loses_and_duplicates_nothing(live_server):
    sys.path.insert(0, str(ROOT / "sdk"))
    from tally_client import Tally

    secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    pg = EmbeddedPostgres(Path(os.environ["TALLY_EMBEDDED_PGDATA"]).parent)
    port = urlparse(os.environ["DATABASE_URL"]).port
    tally = Tally(
        live_server.url,
        secret,
        service="stream",
        batch_size=100,
        flush_interval=0.05,
        initial_backoff=0.2,
        max_backoff=2.0,
        queue_size=50_000,
    )
    sent = 0

    def produce(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            tally.record(
                request_id=f"pg-{sent}",
                model="claude-haiku-4-5",
                latency_ms=15,
                input_tokens=200,
                timestamp=(NOW - timedelta(minutes=sent % 30)).timestamp(),
            )
            sent += 1

    produce(1000)
    assert tally.flush(30)
    pg.stop()
    try:
        produce(2000)  # batches keep coming while PostgreSQL is down
        time.sleep(1.5)  # the client tries, and is told to come back later
        resp = httpx.post(
            f"{live_server.url}/api/v1/events",
            headers={"Authorization": f"Bearer {secret}"},
            json={"request_id": "probe", "model": "claude-haiku-4-5", "latency_ms": 1},
        )
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "5"
        assert tally.stats()["queued"] > 0
    finally:
        pg.start(port_wanted=port)
    produce(1000)
    assert tally.flush(60), tally.stats()
    stats = tally.stats()
    tally.close(5)
    connection.close()  # the restart broke this test's connection; reconnect
    assert _raw_count() == 4000
    assert stats["dropped"] == 0
    assert stats["lost"] == 0
    assert stats["retries"] >= 1, "the outage was not seen by the client"
    rollup_until_current()
    assert _total_requests() == 4000
    assert rollups_verify().differences == []
