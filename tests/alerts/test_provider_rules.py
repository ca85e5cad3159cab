"""Alerting on the gap (issue 14 item 4): `coverage` (Tally cost / provider cost) and
`unmetered_cost_usd` (provider cost Tally did not see) are day rules judged on the provider's
reconciliation of the latest closed UTC day its report was read for; no reading, no judgement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from alerts.formatting import format_metric
from alerts.models import AlertRule, DigestSubscription, Incident, Metric, Notification
from alerts.services import digest_context, digest_send, rules_evaluate
from projects.services import ingest_key_create
from providers.models import ProviderDailyUsage
from providers.services import provider_connection_set
from rollups.services import rollup_until_current
from tests.alerts.test_api import call
from tests.rollups.helpers import ingest

pytestmark = pytest.mark.usefixtures("clean_events")

TODAY = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
NOW = TODAY + timedelta(hours=2)
DAY = TODAY - timedelta(days=1)  # the closed day judged at NOW


@pytest.fixture
def key(transactional_db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod").key


def tally_spends_3_dollars(key) -> None:  # type: ignore[no-untyped-def]
    # claude-sonnet-4-6 input is $3 per MTok: one call of 1M input tokens is exactly $3.00.
    ingest(
        key,
        [
            {
                "request_id": "c1",
                "model": "claude-sonnet-4-6",
                "latency_ms": 500,
                "input_tokens": 1_000_000,
                "timestamp": (DAY + timedelta(hours=10)).isoformat(),
            }
        ],
    )
    rollup_until_current()


def provider_read(key, *, covered: bool, cost: str = "4.50"):  # type: ignore[no-untyped-def]
    connection = provider_connection_set(
        project=key.project, admin_key="sk-ant-admin01-fake-0123456789abcdefXYZ9", api_key_ids=[], workspace_ids=[]
    )
    if covered:  # what a sync stores: the day's rows and the days it read
        ProviderDailyUsage.objects.create(
            connection=connection,
            day=DAY.date(),
            model="claude-sonnet-4-6",
            requests=2,
            uncached_input_tokens=1_500_000,
            cost_usd=Decimal(cost),
            synced_at=NOW,
        )
        type(connection).objects.filter(pk=connection.pk).update(
            covered_from=DAY.date() - timedelta(days=2), covered_to=DAY.date()
        )
    return connection


def rule(key, metric: str, threshold: float, condition: str, window: str = "day") -> AlertRule:  # type: ignore[no-untyped-def]
    return AlertRule.objects.create(
        project=key.project,
        name=f"{metric} per day",
        metric=metric,
        window=window,
        condition=condition,
        threshold=threshold,
        recipients=["finops@example.com"],
    )


def test_coverage_below_and_unmetered_above_fire_once_with_the_days_figures(key):
    tally_spends_3_dollars(key)
    provider_read(key, covered=True)
    coverage = rule(key, Metric.COVERAGE, 0.9, "below")
    unmetered = rule(key, Metric.UNMETERED_COST_USD, 1.0, "above")
    assert rules_evaluate(now=NOW) == {"opened": 2}
    assert rules_evaluate(now=NOW + timedelta(hours=1)) == {"open": 2}  # still the same day: no second email
    assert sorted(Incident.objects.values_list("rule__metric", "value", "window_start")) == [
        ("coverage", 0.667, DAY),
        ("unmetered_cost_usd", 1.5, DAY),
    ]
    mails = {n.incident.rule_id: n for n in Notification.objects.all()}  # type: ignore[union-attr]
    assert len(mails) == 2
    assert Notification.objects.count() == 2
    assert mails[coverage.pk].subject == "[Tally] acme: provider coverage 66.7% < 90.0%"
    assert mails[unmetered.pk].subject == "[Tally] acme: unmetered spend $1.50 > $1.00"
    body = mails[coverage.pk].body_text
    assert "Anthropic billed $4.50; Tally saw $3.00: coverage 66.7%, unmetered $1.50" in body
    assert "claude-sonnet-4-6: $1.50 unmetered" in body
    day = DAY.strftime("%Y-%m-%d")
    assert (
        f"Reconciliation for this day: {settings.TALLY_BASE_URL.rstrip('/')}/reconciliation?project=acme"
        f"&from={day}&to={day}\n" in body
    )
    assert f"/reconciliation?project=acme&amp;from={day}&amp;to={day}" in mails[coverage.pk].body_html


def test_a_day_the_provider_report_was_not_read_is_not_judged(key):
    tally_spends_3_dollars(key)
    provider_read(key, covered=False)  # connected, never synced: Tally's $3.00 alone proves nothing
    rule(key, Metric.COVERAGE, 0.9, "below")
    rule(key, Metric.UNMETERED_COST_USD, 0.0, "above")
    assert rules_evaluate(now=NOW) == {"ok": 2}
    assert Incident.objects.count() == 0
    assert Notification.objects.count() == 0


def test_no_provider_cost_means_no_coverage_judgement(key):
    tally_spends_3_dollars(key)
    provider_read(key, covered=True, cost="0")
    rule(key, Metric.COVERAGE, 0.9, "below")
    assert rules_evaluate(now=NOW) == {"ok": 1}
    assert Incident.objects.count() == 0


def test_an_open_gap_stays_open_over_a_day_with_nothing_to_judge(key):
    tally_spends_3_dollars(key)
    connection = provider_read(key, covered=True)
    rule(key, Metric.COVERAGE, 0.9, "below")
    assert rules_evaluate(now=NOW) == {"opened": 1}
    # The next day is read with no provider cost: still no judgement, so the incident stays open.
    type(connection).objects.filter(pk=connection.pk).update(covered_to=TODAY.date())
    assert rules_evaluate(now=NOW + timedelta(days=1)) == {"ok": 1}
    assert Incident.objects.get().resolved_at is None


@pytest.mark.parametrize("metric", ["coverage", "unmetered_cost_usd"])
def test_provider_metrics_need_the_day_window(transactional_db, metric):
    secret = ingest_key_create(project_slug="acme", environment_name="prod", scope="admin").secret
    body = {
        "name": "gap",
        "metric": metric,
        "window": "hour",
        "condition": "below",
        "threshold": 0.9,
        "recipients": ["finops@example.com"],
    }
    resp = call("post", "/api/v1/alert-rules", secret, body)
    assert resp.status_code == 400
    assert resp.json()["errors"] == [
        {"field": "window", "message": f"{metric} is judged per UTC day: the window must be day, not hour"}
    ]
    assert call("post", "/api/v1/alert-rules", secret, {**body, "window": "day"}).status_code == 201


def test_the_digest_has_a_provider_line_only_with_a_connection(key):
    tally_spends_3_dollars(key)
    assert digest_context(project_id=key.project_id, project_slug="acme", day=DAY)["provider"] is None
    provider_read(key, covered=True)
    line = digest_context(project_id=key.project_id, project_slug="acme", day=DAY)["provider"]
    day = DAY.strftime("%Y-%m-%d")
    assert line["line"] == "coverage 66.7% (Tally $3.00 of $4.50 billed), unmetered spend $1.50"
    assert line["link"].endswith(f"/reconciliation?project=acme&from={day}&to={day}")
    DigestSubscription.objects.create(project=key.project, enabled=True, recipients=["finops@example.com"])
    assert digest_send(day=NOW) == 1
    assert (
        "Provider reconciliation: coverage 66.7% (Tally $3.00 of $4.50 billed), unmetered spend $1.50 ("
        in Notification.objects.get().body_text
    )


def test_provider_metric_format():
    assert format_metric(Metric.COVERAGE, 0.667) == "66.7%"
    assert format_metric(Metric.UNMETERED_COST_USD, 1234.5) == "$1,234.50"


def test_the_pages_show_a_provider_incident_and_the_form_names_the_window(key, django_user_model):
    from django.test import Client

    tally_spends_3_dollars(key)
    provider_read(key, covered=True)
    gap = rule(key, Metric.COVERAGE, 0.9, "below")
    rules_evaluate(now=NOW)
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-0123456789"))
    listing = client.get("/alerts/?project=acme")
    assert listing.status_code == 200
    assert "provider coverage" in listing.content.decode()
    assert "90.0%" in listing.content.decode()
    history = client.get(f"/alerts/{gap.pk}/?project=acme")
    assert history.status_code == 200
    assert "Anthropic billed $4.50; Tally saw $3.00: coverage 66.7%, unmetered $1.50" in history.content.decode()
    form = client.post(
        "/alerts/new?project=acme",
        {
            "name": "gap",
            "metric": "unmetered_cost_usd",
            "window": "hour",
            "condition": "above",
            "threshold": "1",
            "recipients": "finops@example.com",
        },
    )
    assert form.status_code == 200
    assert "unmetered_cost_usd is judged per UTC day: the window must be day, not hour" in form.content.decode()
    assert AlertRule.objects.count() == 1


def test_a_sync_after_the_days_evaluation_gets_the_rule_judged_again(key):
    tally_spends_3_dollars(key)
    connection = provider_read(key, covered=False)
    rule(key, Metric.COVERAGE, 0.9, "below")
    assert rules_evaluate(now=NOW) == {"ok": 1}  # not read yet
    assert rules_evaluate(project_ids=[], now=NOW + timedelta(minutes=30)) == {}  # nothing new: not due
    provider_read(key, covered=True)  # the sync reads the day...
    type(connection).objects.filter(pk=connection.pk).update(last_synced_at=NOW + timedelta(hours=1))
    assert rules_evaluate(project_ids=[], now=NOW + timedelta(hours=1, minutes=5)) == {"opened": 1}
