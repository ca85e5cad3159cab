"""Shared fixtures. The suite runs against real PostgreSQL and Redis: `make test` starts the
embedded ones (devserver/embedded.py) unless DATABASE_URL / CELERY_BROKER_URL are set."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import Client

# schemathesis' seed (tests/api/test_schemathesis.py): a new one each run, so runs explore
# different cases; TALLY_SCHEMATHESIS_SEED replays a run. The report header prints it.
SCHEMATHESIS_SEED = int(os.environ.get("TALLY_SCHEMATHESIS_SEED") or secrets.randbelow(2**32))


def pytest_report_header() -> str:
    return f"schemathesis seed: {SCHEMATHESIS_SEED} (replay with TALLY_SCHEMATHESIS_SEED={SCHEMATHESIS_SEED})"


@pytest.fixture
def project(db):  # type: ignore[no-untyped-def]
    from projects.services import environment_get_or_create, project_get_or_create

    project = project_get_or_create(slug="acme")
    environment_get_or_create(project=project, name="prod")
    return project


@pytest.fixture
def ingest_key(db):  # type: ignore[no-untyped-def]
    """(secret, key) of a fresh ingest key for acme/prod."""
    from projects.services import ingest_key_create

    created = ingest_key_create(project_slug="acme", environment_name="prod")
    return created.secret, created.key


@pytest.fixture
def clean_events(transactional_db):  # type: ignore[no-untyped-def]
    """Transactional tests commit for real; the unmanaged event tables are not flushed by Django."""
    yield
    with connection.cursor() as cursor:
        # DELETE, not TRUNCATE: a test leaves a handful of rows, and TRUNCATE gives every day
        # partition and each of its indexes a new file (about 0.1 s a test, ~90 tests).
        for table in ("ingest_event", "ingest_eventkey", "ingest_dirtyhour"):
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - constant names


@pytest.fixture(autouse=True)
def _fresh_process_caches(settings):  # type: ignore[no-untyped-def]
    from core.caches import process_caches_clear

    # Failed-login counters live in the shared Redis: each test counts under keys of its own
    # (they expire with the window), so one test's failures never lock another out.
    settings.TALLY_LOGIN_KEY_PREFIX = f"tally:test-login:{uuid.uuid4().hex}:"
    process_caches_clear()
    yield
    process_caches_clear()


def post_events(
    client: Client,
    secret: str | None,
    body: Any,
    *,
    gzip_body: bool = False,
    content_type: str = "application/json",
    **headers: str,
):  # type: ignore[no-untyped-def]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    extra = dict(headers)
    if secret is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    if gzip_body:
        data = gzip.compress(data)
        extra["HTTP_CONTENT_ENCODING"] = "gzip"
    return client.post("/api/v1/events", data=data, content_type=content_type, **extra)


def committed_event_count(request_ids: list[str]) -> int:
    """Events with these request ids as a separate connection sees them: only what is committed."""
    import psycopg

    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"], password=s["PASSWORD"] or None
    ) as conn:
        row = conn.execute("SELECT count(*) FROM ingest_event WHERE request_id = ANY(%s)", [request_ids]).fetchone()
        return int(row[0])
