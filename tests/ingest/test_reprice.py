from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ingest.models import DirtyHour, Event
from ingest.services import events_ingest
from pricing.models import PriceOverride

NOW = datetime.now(tz=UTC).replace(minute=30, second=0, microsecond=0)


def _ingest(key, events):  # type: ignore[no-untyped-def]
    return events_ingest(
        project_id=key.project_id, environment_id=key.environment_id, body={"events": events}, max_batch=1000
    )


def test_reprice_applies_an_override_from_its_effective_date(ingest_key):
    _, key = ingest_key
    old, new = NOW - timedelta(days=3), NOW - timedelta(days=1)
    _ingest(
        key,
        [
            {
                "request_id": "old",
                "model": "claude-sonnet-4-6",
                "latency_ms": 5,
                "input_tokens": 1_000_000,
                "timestamp": old.isoformat(),
            },
            {
                "request_id": "new",
                "model": "claude-sonnet-4-6",
                "latency_ms": 5,
                "input_tokens": 1_000_000,
                "output_tokens": 1_000_000,
                "timestamp": new.isoformat(),
            },
        ],
    )
    assert Event.objects.get(request_id="new").cost_usd == Decimal("18")  # $3 + $15 list price
    DirtyHour.objects.all().delete()
    override = PriceOverride.objects.create(
        project_id=key.project_id,
        model="claude-sonnet-4-6",
        effective_from=NOW - timedelta(days=2),
        input_usd_per_mtok=Decimal("2.4"),
        output_usd_per_mtok=Decimal("12"),
    )
    out = StringIO()
    call_command(
        "reprice",
        "--from",
        (NOW - timedelta(days=5)).date().isoformat(),
        "--to",
        NOW.date().isoformat(),
        stdout=out,
        stderr=StringIO(),
    )
    assert out.getvalue().strip().endswith("examined 2 events, re-priced 1")
    assert Event.objects.get(request_id="old").cost_usd == Decimal("3")
    repriced = Event.objects.get(request_id="new")
    assert repriced.cost_usd == Decimal("14.4")
    assert repriced.price_source == f"override:{override.pk}"
    # Only the changed event's hour is marked for re-rollup.
    assert list(DirtyHour.objects.values_list("hour_start", flat=True)) == [new.replace(minute=0)]
    # Running again changes nothing.
    out = StringIO()
    call_command(
        "reprice",
        "--from",
        (NOW - timedelta(days=5)).date().isoformat(),
        "--to",
        NOW.date().isoformat(),
        stdout=out,
        stderr=StringIO(),
    )
    assert out.getvalue().strip().endswith("re-priced 0")


def test_reprice_can_be_limited_to_a_project(ingest_key):
    _, key = ingest_key
    _ingest(key, [{"request_id": "p1", "model": "claude-haiku-4-5", "latency_ms": 5, "input_tokens": 10}])
    with pytest.raises(CommandError, match="no project"):
        call_command("reprice", "--from", "2026-01-01", "--to", "2026-01-02", "--project", "nope")
    with pytest.raises(CommandError, match="RFC 3339"):
        call_command("reprice", "--from", "last week", "--to", "2026-01-02")
    out = StringIO()
    call_command(
        "reprice",
        "--from",
        (NOW - timedelta(days=1)).date().isoformat(),
        "--to",
        NOW.date().isoformat(),
        "--project",
        "acme",
        stdout=out,
        stderr=StringIO(),
    )
    assert "examined 1 events, re-priced 0" in out.getvalue()
