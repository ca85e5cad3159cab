"""`manage.py seed_demo` and `ingest.services.demo_seed`: realistic, deterministic, idempotent demo data.

Plain `django_db` (not transaction=True) is enough for the events: `events_ingest`'s atomic block becomes a
savepoint inside the test transaction, and the day partitions the demo needs already exist
(migration 0001 creates 31 days back and 7 ahead). The demo alerts roll up on
the rollup's own connections, so their test commits for real (transaction=True).
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from alerts.models import AlertRule, Budget, Notification
from alerts.services import demo_alerts_seed, demo_seed_with_alerts
from ingest.models import Event
from ingest.services.demo import UNPRICED_MODEL, demo_seed
from projects.models import Environment, Project

pytestmark = pytest.mark.django_db


def _seed(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_seed_demo_writes_every_kind_of_event_and_a_rerun_adds_nothing():
    out, err = _seed("--days", "3", "--events", "500", "--project", "demo-test", "--no-alerts")
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

    out, _ = _seed("--days", "3", "--events", "500", "--project", "demo-test", "--no-alerts")
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


# A fixed "now", so the month of demo events (now-relative) and everything evaluated on it are
# the same on every run; ingest creates the day partitions that instant needs.
DEMO_NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
def test_first_seed_adds_rules_a_budget_and_the_incidents_they_open_once():
    """Issue 12 item 9: thresholds, incidents and an explained alert on the first `make run`."""
    with time_machine.travel(DEMO_NOW, tick=True):
        summary = demo_seed_with_alerts(now=DEMO_NOW)
    assert summary["accepted"] == 20000
    assert summary["alerts"] == {"created": True, "rules": 3, "incidents": 7, "notifications": 15}
    project = Project.objects.get(slug="demo")
    rules = {r.name: r for r in AlertRule.objects.filter(project=project)}
    assert {
        name: (r.metric, r.condition, r.threshold, r.sensitivity, r.environment, r.service) for name, r in rules.items()
    } == {
        "Prod spend per hour": ("cost_usd", "above", 1.6, None, "prod", None),
        "Search P95 latency": ("latency_p95_ms", "above", 19000.0, None, "prod", "search"),
        "Prod error rate anomaly": ("error_rate", "anomaly", None, 6.0, "prod", None),
    }
    assert all(r.last_evaluated_at == DEMO_NOW for r in rules.values())

    def spans(name: str) -> list[tuple[str, str]]:
        return [
            (f"{i.window_start:%m-%d %H:%M}", f"{i.resolved_at:%m-%d %H:%M}")
            for i in rules[name].incidents.order_by("window_start")
        ]

    # Spend over $1.60 in an hour: the overload afternoon's retries and two busy afternoons.
    assert spans("Prod spend per hour") == [
        ("11-21 14:00", "11-21 16:02"),
        ("11-26 15:00", "11-26 17:02"),
        ("11-27 12:00", "11-27 14:02"),
    ]
    assert spans("Search P95 latency") == [
        ("11-23 13:00", "11-23 15:02"),
        ("11-25 12:00", "11-25 14:02"),
        ("12-02 16:00", "12-02 18:02"),
    ]
    # The overload afternoon (529s from 14:00) against a quiet 14:00 on each of the 14 days before.
    assert spans("Prod error rate anomaly") == [("11-21 14:00", "11-21 16:02")]
    anomaly = rules["Prod error rate anomaly"].incidents.get()
    assert anomaly.value == pytest.approx(83 / 153)
    assert anomaly.baseline == 0.0
    assert anomaly.detail["errors"] == [
        {"kind": "type", "value": "overloaded_error", "count": 83, "share": 1.0, "before": 0},
        {"kind": "status", "value": "529", "count": 83, "share": 1.0, "before": 0},
    ]

    budget = Budget.objects.get(project=project)
    assert (budget.period, budget.limit_usd) == ("month", Decimal("45.00"))

    # Every incident emailed once when it opened and once when it resolved, plus the budget's 80%.
    notifications = Notification.objects.filter(project=project)
    assert dict(notifications.values_list("kind").annotate(n=Count("id"))) == {
        "incident_opened": 7,
        "incident_resolved": 7,
        "budget": 1,
    }
    assert not notifications.filter(sent_at__isnull=True).exists()
    assert len(mail.outbox) == 15
    assert (
        notifications.get(kind="budget").subject == "[Tally] demo: Monthly LLM budget at 80% ($36.79 of $45.00 monthly)"
    )
    explained = notifications.get(kind="incident_opened", incident=anomaly)
    assert explained.subject == "[Tally] prod: error rate 54.2% > baseline 0.0%"
    text = explained.body_text.replace("\r\n", "\n")
    assert "  - model claude-sonnet-4-6 61.9%, 88% of errors (4.2% a day earlier, +57.7%)\n" in text
    assert (
        "  - error type overloaded_error: 83 calls, 100% of errors (0 a day earlier)\n"
        "  - HTTP status 529: 83 calls, 100% of errors (0 a day earlier)\n"
    ) in text
    assert (
        "/events?project=demo&from=2026-11-21T14:00:00Z&to=2026-11-21T15:00:00Z&environment=prod&status=error" in text
    )

    # A second run (a restart, or seed_demo by hand) adds nothing.
    with time_machine.travel(DEMO_NOW + timedelta(minutes=5), tick=True):
        again = demo_seed_with_alerts(now=DEMO_NOW)
    assert (again["accepted"], again["duplicates"]) == (0, 20000)
    assert again["alerts"] == {"created": False, "rules": 0, "incidents": 0, "notifications": 0}
    assert AlertRule.objects.filter(project=project).count() == 3
    assert Budget.objects.filter(project=project).count() == 1
    assert Notification.objects.filter(project=project).count() == 15


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
def test_a_crash_midway_leaves_no_demo_alerts_and_the_next_run_seeds_them(monkeypatch):
    demo_seed(days=3, events=1500, project_slug="crashy")
    project = Project.objects.get(slug="crashy")

    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("worker killed")

    monkeypatch.setattr("alerts.services.budgets_check", broken)
    with pytest.raises(RuntimeError, match="worker killed"):
        demo_alerts_seed(project_id=project.pk)
    # The rules, their incidents and emails were one transaction: none of it stayed.
    assert not AlertRule.objects.filter(project=project).exists()
    assert not Notification.objects.filter(project=project).exists()
    assert len(mail.outbox) == 0

    monkeypatch.undo()
    seeded = demo_alerts_seed(project_id=project.pk)
    assert (seeded.created, seeded.rules) == (True, 3)
    assert AlertRule.objects.filter(project=project).count() == 3
    assert Budget.objects.filter(project=project).count() == 1
    assert Notification.objects.filter(project=project).count() == seeded.notifications == len(mail.outbox)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
def test_two_seeders_at_once_add_the_demo_alerts_once():
    demo_seed(days=3, events=1500, project_slug="racy")
    project = Project.objects.get(slug="racy")
    barrier = threading.Barrier(2)

    def seed() -> bool:
        try:
            barrier.wait()
            return demo_alerts_seed(project_id=project.pk).created
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=2) as pool:
        created = sorted(pool.map(lambda _: seed(), range(2)))
    assert created == [False, True]
    assert AlertRule.objects.filter(project=project).count() == 3
    assert Budget.objects.filter(project=project).count() == 1
