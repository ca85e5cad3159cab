"""POST events -> real Redis broker -> real Celery beat + worker -> /api/v1/metrics. No manual rollup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from projects.services import ingest_key_create

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_events")]
ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture
def celery_processes(tmp_path):  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "TALLY_ROLLUP_INTERVAL": "1",
        "SECRET_KEY": settings.SECRET_KEY,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    # A queue of our own, so a `make run` worker on the same Redis cannot take our tasks.
    queue = f"tally-e2e-{os.getpid()}"
    env["CELERY_TASK_DEFAULT_QUEUE"] = queue
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "solo",
                "-Q",
                queue,
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(tmp_path / "beat-schedule"),
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        ),
    ]
    yield
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_posted_events_reach_the_metrics_api_through_beat_and_worker(live_server, celery_processes):
    ingest_secret = ingest_key_create(project_slug="acme", environment_name="prod").secret
    read_secret = ingest_key_create(project_slug="acme", environment_name="prod", scope="read").secret
    now = datetime.now(tz=UTC)
    events = [
        {
            "request_id": f"e2e-{i}",
            "model": "claude-haiku-4-5",
            "latency_ms": 100 + i,
            "input_tokens": 1000,
            "output_tokens": 200,
            "timestamp": (now - timedelta(minutes=i)).isoformat(),
        }
        for i in range(30)
    ]
    resp = httpx.post(
        f"{live_server.url}/api/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {ingest_secret}"},
        timeout=60,  # the first request of a fresh process also creates the day's partition
    )
    assert resp.json()["accepted"] == 30
    params = {"from": (now - timedelta(days=1)).date().isoformat(), "to": now.date().isoformat()}
    deadline = time.monotonic() + 90
    totals: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(
            f"{live_server.url}/api/v1/metrics", params=params, headers={"Authorization": f"Bearer {read_secret}"}
        ).json()
        totals = body["totals"]
        if totals["requests"] == 30:
            break
        time.sleep(0.5)
    assert totals["requests"] == 30
    assert totals["input_tokens"] == 30_000
    assert totals["output_tokens"] == 6000
    # Haiku 4.5: 30 x (1000 x $1 + 200 x $5) / 1e6
    assert totals["cost_usd"] == pytest.approx(0.06, rel=1e-12)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ingest_dirtyhour")
        assert cursor.fetchone()[0] == 0
