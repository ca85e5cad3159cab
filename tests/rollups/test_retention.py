"""Retention of raw events and aggregates, and an end user's deletion request: exact counts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from ingest.models import Event
from ingest.partitions import existing_partition_days, forget_known_partitions, partition_name, partitions_ensure
from projects.models import Project
from projects.services import ingest_key_create
from rollups.models import DailyAggregate, DailyUserSpend, HourlyAggregate
from rollups.services import retention_apply, rollup_until_current, rollups_verify
from tests.rollups.helpers import ingest

pytestmark = pytest.mark.usefixtures("clean_events")
NOW = datetime.now(tz=UTC)


def ev(rid: str, days_ago: float, user: str = "", tokens: int = 1_000_000) -> dict:
    # Haiku 4.5: $1 per million input tokens, so each event costs exactly tokens / 1e6 dollars.
    return {
        "request_id": rid,
        "model": "claude-haiku-4-5",
        "latency_ms": 100,
        "input_tokens": tokens,
        "user_id": user,
        "timestamp": (NOW - timedelta(days=days_ago)).isoformat(),
    }


def total(model) -> tuple[int, Decimal]:  # type: ignore[no-untyped-def]
    rows = list(model.objects.values_list("requests", "cost_usd"))
    return sum(r for r, _ in rows), sum((c for _, c in rows), Decimal(0))


@pytest.fixture
def keys(transactional_db):  # type: ignore[no-untyped-def]
    return (
        ingest_key_create(project_slug="acme", environment_name="prod").key,
        ingest_key_create(project_slug="globex", environment_name="prod").key,
    )


def test_retention_trims_raw_events_per_project_and_keeps_aggregates(keys):
    acme, globex = keys
    ingest(acme, [ev("a-old1", 10), ev("a-old2", 9), ev("a-new", 2)])
    ingest(globex, [ev("g-old", 10), ev("g-new", 2)])
    # Shortened after the events arrived (ingest refuses events older than the retention).
    Project.objects.filter(slug="acme").update(raw_retention_days=7)
    rollup_until_current()
    assert total(DailyAggregate) == (5, Decimal(5))
    result = retention_apply()
    # acme keeps 7 days: its two old events go; globex keeps 30: nothing of it goes.
    assert result.events_deleted == 2
    assert sorted(Event.objects.values_list("request_id", flat=True)) == ["a-new", "g-new", "g-old"]
    assert total(DailyAggregate) == (5, Decimal(5))  # aggregates are kept
    assert total(HourlyAggregate) == (5, Decimal(5))
    assert rollups_verify().differences == []  # hours past retention are not compared
    assert retention_apply().events_deleted == 0  # idempotent
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ingest_eventkey WHERE project_id = %s", [acme.project_id])
        assert cursor.fetchone()[0] == 1


def test_whole_partitions_older_than_every_project_are_dropped(keys):
    forget_known_partitions()
    old_day = (NOW - timedelta(days=31)).date()
    partitions_ensure({old_day})
    assert old_day in existing_partition_days()
    result = retention_apply()
    assert partition_name(old_day) in result.partitions_dropped
    assert old_day not in existing_partition_days()
    assert (NOW - timedelta(days=29)).date() in existing_partition_days()


def test_old_aggregates_go_after_their_own_retention(keys, settings):
    acme, _ = keys
    ingest(acme, [ev("x1", 5), ev("x2", 1)])
    rollup_until_current()
    settings.TALLY_AGGREGATE_RETENTION_DAYS = 3
    out = StringIO()
    call_command("apply_retention", stdout=out, stderr=StringIO())
    assert total(DailyAggregate) == (1, Decimal(1))
    assert total(HourlyAggregate) == (1, Decimal(1))
    assert "aggregate rows" in out.getvalue()


def test_forget_user_deletes_raw_events_and_user_rows_and_keeps_totals_consistent(keys):
    acme, globex = keys
    ingest(acme, [ev("u1", 1, "alice"), ev("u2", 2, "alice", 2_000_000), ev("u3", 1, "bob"), ev("u4", 1)])
    ingest(globex, [ev("g1", 1, "alice")])
    rollup_until_current()
    assert total(DailyAggregate) == (5, Decimal(6))
    assert DailyUserSpend.objects.filter(user_id="alice").count() == 3
    out = StringIO()
    call_command("forget_user", "--project", "acme", "--user-id", "alice", stdout=out)
    assert "deleted 2 events" in out.getvalue()
    assert sorted(Event.objects.values_list("request_id", flat=True)) == ["g1", "u3", "u4"]
    # Totals now equal the raw data that is left: 3 events, $3.
    assert total(DailyAggregate) == (3, Decimal(3))
    assert total(HourlyAggregate) == (3, Decimal(3))
    assert list(DailyUserSpend.objects.filter(project_id=acme.project_id).values_list("user_id", flat=True)) == ["bob"]
    # The same user id in another project is another person: untouched.
    assert DailyUserSpend.objects.filter(project_id=globex.project_id, user_id="alice").count() == 1
    assert rollups_verify().differences == []
    # A client retry of a forgotten event does not bring it back.
    assert ingest(acme, [ev("u1", 1, "alice")]).duplicates == 1


def test_forget_user_admin_api(keys):
    acme, _ = keys
    ingest(acme, [ev("p1", 1, "carol"), ev("p2", 1, "dave")])
    rollup_until_current()
    admin = ingest_key_create(project_slug="acme", environment_name="prod", scope="admin").secret
    read = ingest_key_create(project_slug="acme", environment_name="prod", scope="read").secret
    body = json.dumps({"user_id": "carol"})
    assert (
        Client()
        .post("/api/v1/users/forget", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {read}")
        .status_code
        == 401
    )
    resp = Client().post(
        "/api/v1/users/forget", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {admin}"
    )
    assert resp.status_code == 200
    assert resp.json() == {"events_deleted": 1, "hours_rerolled": 1, "user_rows_deleted": 1}
    assert total(DailyAggregate) == (1, Decimal(1))
    bad = Client().post(
        "/api/v1/users/forget",
        json.dumps({"user_id": ""}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {admin}",
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "user_id"
