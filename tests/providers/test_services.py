"""The sync against the fake Anthropic Admin API: every page, idempotent, revised days replaced,
429 honoured, failures recorded and never raised; and the key stored encrypted."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection as db

from providers.models import ProviderConnection, ProviderDailyUsage
from providers.services import (
    REPORT_EARLIEST,
    admin_key_decrypt,
    provider_connection_set,
    provider_usage_sync,
    provider_usage_sync_all,
    sync_window,
)
from tests.providers.conftest import ADMIN_KEY, PROVIDER_DAY, today
from tests.providers.fake_anthropic import COST_PATH, USAGE_PATH, Figures


def stored(connection: ProviderConnection) -> dict[tuple[str, str], tuple[int, ...]]:
    return {
        (r.day.isoformat(), r.model): (
            r.requests,
            r.uncached_input_tokens,
            r.cache_read_input_tokens,
            r.cache_creation_5m_input_tokens,
            r.cache_creation_1h_input_tokens,
            r.output_tokens,
            r.cost_usd,
        )
        for r in ProviderDailyUsage.objects.filter(connection=connection)
    }


def seed(fake, day, figures=PROVIDER_DAY):  # type: ignore[no-untyped-def]
    for model, f in figures.items():
        fake.days[(day, model)] = f


def no_sleep(waits: list[float]):  # type: ignore[no-untyped-def]
    return waits.append


def test_sync_follows_every_page_of_both_reports_and_stores_each_day_and_model(fake_api, connected):
    day = today() - timedelta(days=2)
    seed(fake_api, day)
    fake_api.days[(day - timedelta(days=3), "claude-sonnet-4-6")] = Figures(
        requests=7, output_tokens=5, amount_cents="0.75"
    )
    result = provider_usage_sync(connection=connected)
    assert result.ok, result.error
    assert (result.start, result.end, result.rows) == (today() - timedelta(days=6), today(), 4)
    # Four rows answer in two pages per report: the cursor was followed to the end.
    for path in (USAGE_PATH, COST_PATH):
        calls = fake_api.report_requests(path)
        assert [c.query.get("page") for c in calls] == [None, ["page-2"]]
        assert calls[0].query["group_by[]"] == ["model"]
        assert calls[0].query["time_bucket_width"] == ["1d"]
        assert calls[0].query["starting_at"][0].startswith((today() - timedelta(days=6)).isoformat())
        assert calls[0].query["ending_at"][0].startswith((today() + timedelta(days=1)).isoformat())
        assert "analytics-usage-cost-2026-08-24" in calls[0].headers["anthropic-beta"]
    assert stored(connected) == {
        (day.isoformat(), "claude-sonnet-4-6"): (2, 200_000, 50_000, 0, 0, 20_000, Decimal("1.22")),
        (day.isoformat(), "claude-haiku-4-5"): (3, 300_000, 0, 30_000, 0, 60_000, Decimal("0.6")),
        (day.isoformat(), "claude-opus-4-1"): (1, 10_000, 0, 0, 0, 1_000, Decimal("0.225")),
        ((day - timedelta(days=3)).isoformat(), "claude-sonnet-4-6"): (7, 0, 0, 0, 0, 5, Decimal("0.0075")),
    }
    connected.refresh_from_db()
    assert connected.last_synced_at is not None
    assert (connected.covered_from, connected.covered_to) == (today() - timedelta(days=6), today())
    assert connected.last_error == ""


def test_resync_replaces_instead_of_adding(fake_api, connected):
    seed(fake_api, today() - timedelta(days=1))
    provider_usage_sync(connection=connected)
    first = stored(connected)
    ids = set(ProviderDailyUsage.objects.values_list("pk", flat=True))
    connected.refresh_from_db()
    provider_usage_sync(connection=connected)
    provider_usage_sync(connection=connected, days=7)
    assert stored(connected) == first
    assert ProviderDailyUsage.objects.count() == 3
    assert not ids & set(ProviderDailyUsage.objects.values_list("pk", flat=True))  # rows were replaced


def test_a_day_revised_between_two_syncs_is_replaced_whole(fake_api, connected):
    day = today() - timedelta(days=2)
    seed(fake_api, day)
    provider_usage_sync(connection=connected)
    # Anthropic revises the day: sonnet grows, opus is re-attributed away entirely.
    fake_api.days[(day, "claude-sonnet-4-6")] = Figures(
        requests=4, uncached_input_tokens=400_000, output_tokens=40_000, amount_cents="240.5"
    )
    del fake_api.days[(day, "claude-opus-4-1")]
    connected.refresh_from_db()
    fake_api.requests.clear()
    assert provider_usage_sync(connection=connected).ok
    # The hourly sync re-reads from 2 days before the last day read: the revised day is in it.
    assert fake_api.report_requests(USAGE_PATH)[0].query["starting_at"][0].startswith(day.isoformat())
    assert stored(connected) == {
        (day.isoformat(), "claude-sonnet-4-6"): (4, 400_000, 0, 0, 0, 40_000, Decimal("2.405")),
        (day.isoformat(), "claude-haiku-4-5"): (3, 300_000, 0, 30_000, 0, 60_000, Decimal("0.6")),
    }


def test_a_429_waits_for_its_retry_after_then_asks_again(fake_api, connected):
    seed(fake_api, today())
    fake_api.rate_limit_once("2")
    waits: list[float] = []
    result = provider_usage_sync(connection=connected, sleep=no_sleep(waits))
    assert result.ok, result.error
    assert waits == [2.0]
    statuses = [(r.path, r.query.get("page"), r.status) for r in fake_api.requests]
    assert statuses[:2] == [(USAGE_PATH, None, 429), (USAGE_PATH, None, 200)]
    assert len(stored(connected)) == 3


def test_a_real_retry_after_is_slept(fake_api, connected):
    seed(fake_api, today())
    fake_api.rate_limit_once("1")
    assert provider_usage_sync(connection=connected).ok
    first, second = fake_api.requests[:2]
    assert first.status == 429
    assert second.at - first.at >= 1.0


def test_a_retry_after_past_our_patience_is_recorded_not_waited(fake_api, connected):
    seed(fake_api, today())
    provider_usage_sync(connection=connected)
    before = stored(connected)
    fake_api.rate_limit_once("3600")
    waits: list[float] = []
    result = provider_usage_sync(connection=connected, sleep=no_sleep(waits))
    assert not result.ok
    assert waits == []
    connected.refresh_from_db()
    assert "rate-limited" in connected.last_error
    assert "retry-after 3600 s" in connected.last_error
    assert stored(connected) == before  # a failed sync leaves the figures as they were


def test_an_invalid_key_is_recorded_on_the_connection_and_never_raised(fake_api, connected):
    seed(fake_api, today())
    provider_usage_sync(connection=connected)
    before = stored(connected)
    provider_connection_set(
        project=connected.project, admin_key="sk-ant-admin01-revoked-key-0000", api_key_ids=[], workspace_ids=[]
    )
    results = provider_usage_sync_all()  # what beat runs: returns, whatever happened
    assert [(r.project_slug, r.ok) for r in results] == [("acme", False)]
    connected.refresh_from_db()
    assert connected.last_error == (
        "Anthropic refused the Admin API key (401): invalid x-api-key. Save a valid Admin API key."
    )
    assert connected.last_error_at is not None
    assert stored(connected) == before
    # Saving a good key again clears the error; the next sync works.
    provider_connection_set(project=connected.project, admin_key=ADMIN_KEY, api_key_ids=[], workspace_ids=[])
    connected.refresh_from_db()
    assert connected.last_error == ""
    assert provider_usage_sync(connection=connected).ok


def test_an_unreachable_api_is_recorded(connected, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    result = provider_usage_sync(connection=connected)
    assert not result.ok
    connected.refresh_from_db()
    assert connected.last_error.startswith("could not reach the Anthropic API")


def test_a_changed_encryption_secret_is_recorded_not_raised(fake_api, connected, settings):
    settings.TALLY_ENCRYPTION_KEY = "a-different-secret"
    assert not provider_usage_sync(connection=connected).ok
    connected.refresh_from_db()
    assert "cannot be decrypted" in connected.last_error
    assert fake_api.requests == []


def test_scope_ids_restrict_the_reports(fake_api, connected):
    provider_connection_set(
        project=connected.project, admin_key=None, api_key_ids=["apikey_01", "apikey_02"], workspace_ids=["wrkspc_01"]
    )
    connected.refresh_from_db()
    provider_usage_sync(connection=connected)
    for path in (USAGE_PATH, COST_PATH):
        query = fake_api.report_requests(path)[0].query
        assert query["api_key_ids[]"] == ["apikey_01", "apikey_02"]
        assert query["workspace_ids[]"] == ["wrkspc_01"]


def test_the_key_is_stored_encrypted(connected):
    with db.cursor() as cursor:
        cursor.execute("SELECT admin_key_encrypted, admin_key_last4 FROM providers_providerconnection")
        ciphertext, last4 = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM providers_providerconnection "
            "WHERE row_to_json(providers_providerconnection)::text LIKE %s",
            [f"%{ADMIN_KEY[8:]}%"],
        )
        assert cursor.fetchone()[0] == 0
    assert ADMIN_KEY not in ciphertext
    assert ADMIN_KEY[8:] not in ciphertext
    assert ciphertext.startswith("gAAAAA")  # a Fernet token
    assert last4 == "XYZ9"
    assert admin_key_decrypt(token=ciphertext) == ADMIN_KEY


@pytest.mark.parametrize(
    ("covered_to", "days", "expected_start"),
    [
        (None, None, 6),  # never synced: the last 7 days
        (0, None, 2),  # synced today: the 3 days Anthropic may still revise
        (-10, None, 12),  # last read 10 days ago: fill the gap, from 2 days before it
        (0, 30, 29),  # --days 30
        (0, 1, 2),  # --days 1 still re-reads 3 days
        (None, 5000, 364),  # never more than the report's 365 days (nor before 2026-01-01)
    ],
)
def test_sync_window(connected, covered_to, days, expected_start):
    now = today()
    connected.covered_to = None if covered_to is None else now + timedelta(days=covered_to)
    expected = max(now - timedelta(days=expected_start), REPORT_EARLIEST)
    assert sync_window(connection=connected, today=now, days=days) == expected


def test_more_than_31_days_is_read_in_31_day_requests(fake_api, connected):
    provider_usage_sync(connection=connected, days=40)
    calls = fake_api.report_requests(USAGE_PATH)
    assert [c.query["starting_at"][0][:10] for c in calls] == [
        (today() - timedelta(days=39)).isoformat(),
        (today() - timedelta(days=8)).isoformat(),
    ]


def test_a_sync_failing_on_the_last_page_stores_nothing_of_it(fake_api, connected):
    day = today() - timedelta(days=1)
    seed(fake_api, day)
    provider_usage_sync(connection=connected)
    before = stored(connected)
    connected.refresh_from_db()
    fake_api.days[(day, "claude-sonnet-4-6")] = Figures(requests=99, amount_cents="9900")
    fake_api.rate_limit_once("3600", after=3)  # usage pages 1-2 and cost page 1 answer; cost page 2 doesn't
    result = provider_usage_sync(connection=connected, sleep=no_sleep([]))
    assert not result.ok
    assert [r.status for r in fake_api.requests[-4:]] == [200, 200, 200, 429]
    assert stored(connected) == before  # half a sync is no sync: the revised figures wait for the next one


def test_two_syncs_at_once_leave_one_row_per_day_and_model(transactional_db, fake_api, connected):
    import threading

    from django.db import connections

    seed(fake_api, today() - timedelta(days=1))
    results = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            results.append(provider_usage_sync(connection=ProviderConnection.objects.get(pk=connected.pk)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.ok for r in results] == [True, True]
    assert len(stored(connected)) == 3
    assert ProviderDailyUsage.objects.count() == 3
