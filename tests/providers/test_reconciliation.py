"""GET /api/v1/reconciliation and the Reconciliation page on the crafted day: exact rows and totals,
models matched through pricing's aliases, a model Tally never saw, and what each difference means."""

from __future__ import annotations

from datetime import timedelta

import pytest

from providers.services import provider_usage_sync
from tests.providers.conftest import today

ZERO_SIDE = {
    "requests": 0,
    "uncached_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation_5m_input_tokens": 0,
    "cache_creation_1h_input_tokens": 0,
    "output_tokens": 0,
    "cost_usd": 0.0,
}


def expected_rows(day: str) -> list[dict[str, object]]:
    return [
        {
            "date": day,
            "model": "claude-haiku-4-5",
            "provider": {
                "requests": 3,
                "uncached_input_tokens": 300_000,
                "cache_read_input_tokens": 0,
                "cache_creation_5m_input_tokens": 30_000,
                "cache_creation_1h_input_tokens": 0,
                "output_tokens": 60_000,
                "cost_usd": 0.6,
            },
            "tally": {
                "requests": 1,
                "uncached_input_tokens": 100_000,
                "cache_read_input_tokens": 0,
                "cache_creation_5m_input_tokens": 10_000,
                "cache_creation_1h_input_tokens": 0,
                "output_tokens": 20_000,
                "cost_usd": 0.2125,
            },
            "coverage": 0.354,
            "unmetered_cost_usd": 0.3875,
        },
        {
            "date": day,
            "model": "claude-opus-4-1",
            "provider": {
                "requests": 1,
                "uncached_input_tokens": 10_000,
                "cache_read_input_tokens": 0,
                "cache_creation_5m_input_tokens": 0,
                "cache_creation_1h_input_tokens": 0,
                "output_tokens": 1_000,
                "cost_usd": 0.225,
            },
            "tally": ZERO_SIDE,
            "coverage": 0.0,
            "unmetered_cost_usd": 0.225,
        },
        {
            "date": day,
            "model": "claude-sonnet-4-6",
            "provider": {
                "requests": 2,
                "uncached_input_tokens": 200_000,
                "cache_read_input_tokens": 50_000,
                "cache_creation_5m_input_tokens": 0,
                "cache_creation_1h_input_tokens": 0,
                "output_tokens": 20_000,
                "cost_usd": 1.22,
            },
            "tally": {
                "requests": 2,
                "uncached_input_tokens": 200_000,
                "cache_read_input_tokens": 50_000,
                "cache_creation_5m_input_tokens": 0,
                "cache_creation_1h_input_tokens": 0,
                "output_tokens": 20_000,
                "cost_usd": 0.915,
            },
            "coverage": 0.75,
            "unmetered_cost_usd": 0.305,
        },
    ]


@pytest.fixture
def synced(crafted_day, connected):  # type: ignore[no-untyped-def]
    assert provider_usage_sync(connection=connected).ok
    connected.refresh_from_db()
    return crafted_day


@pytest.fixture
def read_key(transactional_db):  # type: ignore[no-untyped-def]
    from projects.services import ingest_key_create

    return ingest_key_create(project_slug="acme", environment_name="prod", scope="read").secret


def test_the_crafted_day_reconciles_exactly(synced, connected, client, read_key):
    day = synced.day.isoformat()
    response = client.get(f"/api/v1/reconciliation?from={day}&to={day}", HTTP_AUTHORIZATION=f"Bearer {read_key}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["rows"] == expected_rows(day)
    # 1.22 + 0.6 + 0.225 billed; 0.915 + 0.2125 seen; unmetered summed per row.
    assert body["totals"] == {
        "provider_cost_usd": 2.045,
        "tally_cost_usd": 1.1275,
        "coverage": 0.551,
        "unmetered_cost_usd": 0.9175,
    }
    assert body["synced_at"] == connected.last_synced_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_resync_gives_the_same_reconciliation(synced, connected, client, read_key):
    day = synced.day.isoformat()
    url = f"/api/v1/reconciliation?from={day}&to={day}"
    before = client.get(url, HTTP_AUTHORIZATION=f"Bearer {read_key}").json()
    assert provider_usage_sync(connection=connected).ok
    after = client.get(url, HTTP_AUTHORIZATION=f"Bearer {read_key}").json()
    assert after["rows"] == before["rows"] == expected_rows(day)
    assert after["totals"] == before["totals"]


def test_default_range_is_the_last_7_days_and_only_days_read_from_the_provider(synced, client, read_key):
    body = client.get("/api/v1/reconciliation", HTTP_AUTHORIZATION=f"Bearer {read_key}").json()
    assert [r["model"] for r in body["rows"]] == ["claude-haiku-4-5", "claude-opus-4-1", "claude-sonnet-4-6"]
    # Days before the first sync's window are not shown as "Anthropic billed nothing".
    far = (today() - timedelta(days=20)).isoformat()
    body = client.get(f"/api/v1/reconciliation?from={far}&to={far}", HTTP_AUTHORIZATION=f"Bearer {read_key}").json()
    assert body["rows"] == []
    assert body["totals"]["coverage"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-13-01", "from"),
        ("to=yesterday", "to"),
        ("from=2026-12-03&to=2026-12-01", "from"),
        ("from=2024-01-01&to=2026-01-01", "from"),
    ],
)
def test_bad_ranges_are_400_naming_the_field(synced, client, read_key, query, field):
    response = client.get(f"/api/v1/reconciliation?{query}", HTTP_AUTHORIZATION=f"Bearer {read_key}")
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_reconciliation_needs_credentials_and_a_connection(transactional_db, client, read_key):
    assert client.get("/api/v1/reconciliation").status_code == 401
    response = client.get("/api/v1/reconciliation", HTTP_AUTHORIZATION=f"Bearer {read_key}")
    assert response.status_code == 404
    assert "no provider connection" in response.json()["error"]


def test_the_page_names_the_price_difference_and_the_unmetered_models(synced, connected, client, django_user_model):
    from projects.models import Membership

    user = django_user_model.objects.create_user("lead", "lead@example.com", "pw-lead-12345")
    Membership.objects.create(user=user, project=connected.project, role=Membership.Role.VIEWER)
    client.force_login(user)
    day = synced.day.isoformat()
    response = client.get(f"/reconciliation?project=acme&from={day}&to={day}")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-verdict="price"' in html
    assert 'data-model="claude-sonnet-4-6"' in html
    assert "the tokens agree but Anthropic billed $1.22 and Tally priced $0.9150" in html
    assert 'href="/projects/acme/prices"' in html
    assert "Unmetered traffic:" in html
    assert "<code>claude-haiku-4-5</code> ($0.3875), <code>claude-opus-4-1</code> ($0.2250)" in html
    assert "Tally: claude-haiku-4-5-20251001" in html  # matched through the alias, and said so
    assert 'data-model="claude-opus-4-1" data-verdict="unmetered"' in html
