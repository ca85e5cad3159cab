"""Dashboard fixtures: a viewer of project acme, a small known data set rolled up, and a headless browser."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "dashboard-test-pass-42"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture
def viewer_user(transactional_db, django_user_model):  # type: ignore[no-untyped-def]
    """A plain user (not staff) who is a viewer of project acme: pages show members their projects only."""
    from projects.models import Membership
    from projects.services import project_get_or_create

    user = django_user_model.objects.create_user("viewer", "viewer@example.com", PASSWORD)
    Membership.objects.create(user=user, project=project_get_or_create(slug="acme"), role=Membership.Role.VIEWER)
    return user


@pytest.fixture
def logged_in(client, viewer_user):  # type: ignore[no-untyped-def]
    client.force_login(viewer_user)
    return client


@dataclass
class Seeded:
    now: datetime
    events: list[dict[str, Any]]


def _event(rid: str, ts: datetime, **fields: Any) -> dict[str, Any]:
    event = {
        "request_id": rid,
        "model": "claude-sonnet-4-6",
        "latency_ms": 800,
        "timestamp": ts.isoformat(),
        "input_tokens": 1000,
        "output_tokens": 100,
        "service": "checkout",
    }
    event.update(fields)
    return event


@pytest.fixture
def seeded(transactional_db, clean_events):  # type: ignore[no-untyped-def]
    """Six calls in project acme: prod and dev, three models (one unpriced), one error, cache reads,
    features summarize (req_a, req_b) and chat (req_c), users u_1 (req_a, req_old) and u_2 (req_b).

    req_old is 26 hours old (inside "7d", outside "24h"); the rest are in the last 4 hours.
    """
    from ingest.services import events_ingest
    from projects.services import ingest_key_create
    from rollups.services import rollup_until_current

    now = datetime.now(tz=UTC).replace(microsecond=0)
    prod = ingest_key_create(project_slug="acme", environment_name="prod").key
    dev = ingest_key_create(project_slug="acme", environment_name="dev").key
    prod_events = [
        _event(
            "req_a",
            now - timedelta(hours=2),
            latency_ms=100,
            user_id="u_1",
            cache_read_input_tokens=3000,
            metadata={"region": "eu-west"},
            feature="summarize",
            ratelimit_requests_limit=50,
            ratelimit_requests_remaining=35,
        ),
        _event(
            "req_b",
            now - timedelta(hours=3),
            latency_ms=300,
            status="error",
            error_type="overloaded_error",
            http_status=529,
            service="search",
            user_id="u_2",
            feature="summarize",
        ),
        _event(
            "req_c",
            now - timedelta(hours=1),
            model="claude-haiku-4-5",
            latency_ms=50,
            http_status=200,
            feature="chat",
            ratelimit_input_tokens_limit=400_000,
            ratelimit_input_tokens_remaining=120_000,
            cache_creation_input_tokens=2000,
            cache_creation={"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500},
        ),
        _event("req_x", now - timedelta(hours=4), model="claude-experimental-x", latency_ms=900),
        _event("req_old", now - timedelta(hours=26), model="claude-haiku-4-5", latency_ms=2000, user_id="u_1"),
    ]
    dev_events = [_event("req_dev", now - timedelta(hours=1), latency_ms=400)]
    for key, batch in ((prod, prod_events), (dev, dev_events)):
        result = events_ingest(
            project_id=key.project_id, environment_id=key.environment_id, body={"events": batch}, max_batch=1000
        )
        assert result.accepted == len(batch), result.rejected
    rollup_until_current()
    return Seeded(now=now, events=prod_events + dev_events)


@pytest.fixture
def chromium_path() -> str:
    """Debian's chromium; skipped with a reason when absent, unless TALLY_REQUIRE_BROWSER=1."""
    path = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
    if path is None:
        reason = "chromium not found (/usr/bin/chromium or on PATH): browser tests need Debian's chromium"
        if os.environ.get("TALLY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TALLY_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture
def browser_page(chromium_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A fresh headless page that records console errors and uncaught exceptions in `page.errors`."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # meanwhile are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.errors = errors  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            # Playwright's sync API runs on greenlets and Django's connections are context-local,
            # so a connection the test body opened is not the one pytest-django closes at the
            # end of the session; left open, it keeps the test database from being dropped.
            connections.close_all()
            browser.close()
