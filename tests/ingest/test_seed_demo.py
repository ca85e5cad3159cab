"""`manage.py seed_demo` and `ingest.demo.demo_seed`: realistic, deterministic, idempotent demo data.

Plain `django_db` (not transaction=True) is enough: `events_ingest`'s atomic block becomes a
savepoint inside the test transaction, and the day partitions the demo needs already exist
(migration 0001 creates 31 days back and 7 ahead).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db.models import Count, Q
from django.utils import timezone

from ingest.demo import UNPRICED_MODEL, demo_seed
from ingest.models import Event
from projects.models import Environment

pytestmark = pytest.mark.django_db


def _seed(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_seed_demo_writes_every_kind_of_event_and_a_rerun_adds_nothing():
    out, err = _seed("--days", "3", "--events", "500", "--project", "demo-test")
    assert "500 accepted, 0 duplicates, 0 rejected" in out.strip().splitlines()[-1]
    assert "500/500 events" in err

    events = Event.objects.filter(project__slug="demo-test")
    assert events.count() == 500

    per_env = {
        Environment.objects.get(pk=row["environment_id"]).name: row["n"]
        for row in events.values("environment_id").annotate(n=Count("id"))
    }
    assert set(per_env) == {"prod", "staging", "dev"}
    assert per_env["prod"] > per_env["staging"] + per_env["dev"]

    per_model = dict(events.values_list("model").annotate(n=Count("id")))
    assert {"claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7", UNPRICED_MODEL} <= set(per_model)
    assert set(events.values_list("service", flat=True)) == {"checkout", "search", "support-bot", "summarizer"}

    errors = events.filter(status="error")
    assert errors.exists()
    assert not errors.filter(Q(output_tokens__gt=0) | ~Q(stop_reason="")).exists()
    assert events.filter(cache_read_input_tokens__gt=0).count() > 100
    assert events.filter(cache_write_5m_tokens__gt=0).exists()
    assert events.filter(cache_write_1h_tokens__gt=0).exists()
    assert events.filter(time_to_first_token_ms__isnull=False).exists()
    assert events.filter(stop_reason="tool_use").exists()
    assert events.filter(stop_reason="max_tokens").exists()

    batch = events.filter(batch=True)
    assert batch.count() == 25  # the nightly-digest quota, 5% of the events
    assert set(batch.values_list("feature", flat=True)) == {"nightly-digest"}

    unpriced = events.filter(cost_usd__isnull=True)
    assert unpriced.count() == 3
    assert set(unpriced.values_list("model", flat=True)) == {UNPRICED_MODEL}
    assert not events.filter(cost_usd__isnull=True).exclude(model=UNPRICED_MODEL).exists()

    users = events.exclude(user_id="").values("user_id").annotate(n=Count("id")).order_by("-n")
    assert len(users) > 20
    assert users[0]["n"] > 3 * users[len(users) // 2]["n"]  # skewed: heavy users exist

    now = timezone.now()
    newest = events.order_by("-timestamp").first()
    oldest = events.order_by("timestamp").first()
    assert newest is not None
    assert oldest is not None
    assert now - timedelta(minutes=5) < newest.timestamp <= now
    assert oldest.timestamp >= now - timedelta(days=3, minutes=5)

    out, _ = _seed("--days", "3", "--events", "500", "--project", "demo-test")
    assert "0 accepted, 500 duplicates, 0 rejected" in out.strip().splitlines()[-1]
    assert events.count() == 500


def test_same_seed_and_now_give_the_same_events():
    now = datetime.now(tz=UTC).replace(microsecond=0)
    demo_seed(days=2, events=300, project_slug="twin-a", seed=7, now=now)
    demo_seed(days=2, events=300, project_slug="twin-b", seed=7, now=now)
    fields = (
        "request_id",
        "timestamp",
        "model",
        "service",
        "feature",
        "user_id",
        "status",
        "error_type",
        "latency_ms",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cost_usd",
    )

    def rows(slug: str) -> list[tuple]:
        return list(Event.objects.filter(project__slug=slug).order_by("request_id").values_list(*fields))

    assert rows("twin-a") == rows("twin-b")
    assert len(rows("twin-a")) == 300


def test_more_than_30_days_stays_inside_the_ingest_window():
    summary = demo_seed(days=45, events=300, project_slug="long")
    assert summary["rejected"] == 0, summary["first_rejection"]
    assert summary["accepted"] == 300


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        demo_seed(days=0, events=10)
