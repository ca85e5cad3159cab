"""Provider fixtures: the fake Anthropic Admin API (reached through ANTHROPIC_BASE_URL, as in
production), a connected project, and the crafted day both sides report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.dashboard.conftest import browser_page, chromium_path
from tests.providers.fake_anthropic import FakeAdminAPI, Figures, start_fake

__all__ = ["browser_page", "chromium_path"]

ADMIN_KEY = "sk-ant-admin01-fake-0123456789abcdefXYZ9"


@pytest.fixture
def fake_api(monkeypatch):  # type: ignore[no-untyped-def]
    fake = start_fake(ADMIN_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
    yield fake
    assert fake.server is not None
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def connected(db):  # type: ignore[no-untyped-def]
    """Project acme with an Anthropic connection holding ADMIN_KEY."""
    from projects.services import environment_get_or_create, project_get_or_create
    from providers.services import provider_connection_set

    project = project_get_or_create(slug="acme")
    environment_get_or_create(project=project, name="prod")
    return provider_connection_set(project=project, admin_key=ADMIN_KEY, api_key_ids=[], workspace_ids=[])


def today() -> date:
    return datetime.now(tz=UTC).date()


@dataclass
class CraftedDay:
    day: date


# The crafted day, provider side (Anthropic names, cents). Tally side: see `crafted_day`.
#  - claude-sonnet-4-6: the same tokens as Tally's calls, billed $1.22 where Tally prices $0.915
#    (a price difference);
#  - claude-haiku-4-5: Anthropic's short id, Tally's calls say claude-haiku-4-5-20251001; Anthropic
#    saw 3x the tokens (unmetered traffic);
#  - claude-opus-4-1: Tally never saw it.
PROVIDER_DAY = {
    "claude-sonnet-4-6": Figures(
        requests=2,
        uncached_input_tokens=200_000,
        cache_read_input_tokens=50_000,
        output_tokens=20_000,
        amount_cents="122",
    ),
    "claude-haiku-4-5": Figures(
        requests=3,
        uncached_input_tokens=300_000,
        cache_creation_5m_input_tokens=30_000,
        output_tokens=60_000,
        amount_cents="60",
    ),
    "claude-opus-4-1": Figures(requests=1, uncached_input_tokens=10_000, output_tokens=1_000, amount_cents="22.5"),
}


def tally_events(day: date) -> list[dict[str, object]]:
    at = datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
    return [
        # claude-sonnet-4-6 ($3 / $15 / cache read $0.30 per MTok): 0.6 + 0.3 + 0.015 = $0.915
        {
            "request_id": "son-1",
            "model": "claude-sonnet-4-6",
            "timestamp": at.isoformat(),
            "latency_ms": 900,
            "input_tokens": 100_000,
            "output_tokens": 10_000,
            "cache_read_input_tokens": 50_000,
        },
        {
            "request_id": "son-2",
            "model": "claude-sonnet-4-6",
            "timestamp": (at + timedelta(hours=2)).isoformat(),
            "latency_ms": 700,
            "input_tokens": 100_000,
            "output_tokens": 10_000,
        },
        # claude-haiku-4-5 ($1 / $5 / 5m write $1.25 per MTok): 0.1 + 0.1 + 0.0125 = $0.2125
        {
            "request_id": "hai-1",
            "model": "claude-haiku-4-5-20251001",
            "timestamp": at.isoformat(),
            "latency_ms": 300,
            "input_tokens": 100_000,
            "output_tokens": 20_000,
            "cache_creation_input_tokens": 10_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 10_000, "ephemeral_1h_input_tokens": 0},
        },
    ]


@pytest.fixture
def crafted_day(transactional_db, clean_events, fake_api: FakeAdminAPI, connected):  # type: ignore[no-untyped-def]
    """Two days ago (inside the 3 days every sync re-reads): Anthropic's figures in the fake and
    Tally's calls ingested and rolled up. Not synced yet."""
    from ingest.services import events_ingest
    from projects.services import ingest_key_create
    from rollups.services import rollup_until_current

    day = today() - timedelta(days=2)
    for model, figures in PROVIDER_DAY.items():
        fake_api.days[(day, model)] = figures
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    result = events_ingest(
        project_id=key.project_id, environment_id=key.environment_id, body={"events": tally_events(day)}, max_batch=1000
    )
    assert result.accepted == 3, result.rejected
    rollup_until_current()
    return CraftedDay(day=day)
