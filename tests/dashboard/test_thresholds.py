"""Alert rules, incidents and budgets on the dashboard's charts (agreement 5), read through
alerts.selectors.chart_alerts: only rules whose scope is the page's filters, sums only on a chart of
the rule's window, anomaly bands from the same baseline the evaluator uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.models import AlertRule, Budget, Incident
from alerts.selectors import chart_alerts


def _kind(figure, kind):  # type: ignore[no-untyped-def]
    return [t for t in figure["data"] if (t.get("meta") or {}).get("kind") == kind]


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _rule(**fields):  # type: ignore[no-untyped-def]
    from projects.models import Project

    values = {
        "project": Project.objects.get(slug="acme"),
        "name": "Prod errors",
        "metric": "error_rate",
        "window": "hour",
        "condition": "above",
        "threshold": 0.1,
        "environment": "prod",
        "recipients": ["oncall@example.com"],
    }
    values.update(fields)
    return AlertRule.objects.create(**values)


def test_a_rule_in_scope_draws_its_threshold_and_its_incident(logged_in, seeded):
    rule = _rule()
    _rule(name="Dev errors", environment="dev", threshold=0.3)
    _rule(name="Off", enabled=False, threshold=0.2)
    window = _hour(seeded.now - timedelta(hours=3))  # req_b's hour: 1 error in 1 call
    incident = Incident.objects.create(
        rule=rule,
        window_start=window,
        opened_at=window + timedelta(hours=1),
        resolved_at=window + timedelta(hours=2),
        value=1.0,
        threshold=0.1,
    )
    response = logged_in.get("/errors", {"project": "acme", "range": "24h", "environment": "prod"})
    figure = response.context["figures"]["error_rate"]
    [line] = _kind(figure, "threshold")
    assert line["y"] == [10.0, 10.0]
    assert line["name"] == "Prod errors (> 10.0%, hourly)"
    assert line["meta"]["url"] == f"/alerts/{rule.pk}/?project=acme"
    [shape] = figure["layout"]["shapes"]
    fmt = "%Y-%m-%d %H:%M"
    # Resolved an hour after it opened: its window and the next one are shaded, centred on their buckets.
    assert (shape["x0"], shape["x1"]) == (
        (window - timedelta(minutes=30)).strftime(fmt),
        (window + timedelta(minutes=90)).strftime(fmt),
    )
    [marker] = _kind(figure, "incident")
    assert marker["text"] == ["Incident (resolved): Prod errors<br>100.0% vs threshold 10.0%<br>click to open the rule"]
    content = response.content.decode()
    assert f'href="/alerts/{rule.pk}/?project=acme">Prod errors</a>' in content
    assert incident.pk
    # The same chart for the whole project, or one feature of prod, is not what the rule judges.
    for params in ({"range": "24h"}, {"range": "24h", "environment": "prod", "feature": "summarize"}):
        other = logged_in.get("/errors", params).context["figures"]["error_rate"]
        assert _kind(other, "threshold") == []
        assert "shapes" not in other["layout"]


def test_an_email_link_opens_the_incident_window_with_the_threshold(logged_in, seeded):
    """The alert email's link (agreement 5): project, RFC 3339 window, the rule's scope; no range=custom."""
    _rule(name="Spend per hour", metric="cost_usd", threshold=0.001)
    start = _hour(seeded.now) - timedelta(hours=6)
    end = _hour(seeded.now) + timedelta(hours=1)
    response = logged_in.get(
        "/",
        {
            "project": "acme",
            "from": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "environment": "prod",
        },
    )
    filters = response.context["filters"]
    assert (filters.range, filters.start, filters.end, filters.granularity) == ("custom", start, end, "hour")
    assert filters.errors == ()
    assert b"Ignored a filter" not in response.content
    spend = response.context["figures"]["spend"]
    assert len(spend["data"][0]["x"]) == 7
    [line] = _kind(spend, "threshold")
    assert line["y"] == [0.001, 0.001]
    # Hourly spend against a daily chart: not drawn (a 7-day view of the same rule).
    week = logged_in.get("/", {"project": "acme", "range": "7d", "environment": "prod"})
    assert _kind(week.context["figures"]["spend"], "threshold") == []


def test_budgets_in_scope_are_drawn_on_the_month_to_date_chart(logged_in, seeded):
    from projects.models import Project

    project = Project.objects.get(slug="acme")
    Budget.objects.create(project=project, name="Monthly", period="month", limit_usd=25, recipients=["a@example.com"])
    Budget.objects.create(
        project=project, name="Search", period="month", limit_usd=5, service="search", recipients=["a@example.com"]
    )
    mtd = logged_in.get("/spend").context["figures"]["mtd"]
    assert [(t["name"], t["y"]) for t in _kind(mtd, "budget")] == [("Budget Monthly ($25.00 a month)", [25.0, 25.0])]
    search = logged_in.get("/spend", {"service": "search"}).context["figures"]["mtd"]
    assert [t["y"] for t in _kind(search, "budget")] == [[5.0, 5.0]]


@pytest.fixture
def daily_history(transactional_db, clean_events):  # type: ignore[no-untyped-def]
    """Requests on each of the 9 days before today at noon: 4, 4, 4, 3, 3, 3, 2, 2, 2 (oldest first)."""
    from ingest.services import events_ingest
    from projects.services import ingest_key_create
    from rollups.services import rollup_until_current

    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = {9: 4, 8: 4, 7: 4, 6: 3, 5: 3, 4: 3, 3: 2, 2: 2, 1: 2}
    events = [
        {
            "request_id": f"d{days}_{i}",
            "model": "claude-sonnet-4-6",
            "latency_ms": 100,
            "timestamp": (today - timedelta(days=days) + timedelta(hours=12)).isoformat(),
        }
        for days, n in counts.items()
        for i in range(n)
    ]
    result = events_ingest(
        project_id=key.project_id, environment_id=key.environment_id, body={"events": events}, max_batch=1000
    )
    assert result.accepted == 27
    rollup_until_current()
    return today


def test_an_anomaly_rule_draws_the_evaluators_band(logged_in, daily_history):
    today = daily_history
    rule = _rule(
        name="Daily requests", metric="requests", window="day", condition="anomaly", threshold=None, sensitivity=3.0
    )
    found = chart_alerts(
        project_id=rule.project_id,
        start=today - timedelta(days=6),
        end=today + timedelta(days=1),
        now=datetime.now(tz=UTC),
        band_window="day",
        environment="prod",
    )
    # Median 3 and MAD 1 of each day's trailing windows; the scale is the requests floor (10),
    # so median ± 3 x 10. Days with fewer than 7 earlier windows have no baseline.
    assert found.rules[0].band == [
        (today - timedelta(days=2), -27.0, 33.0),
        (today - timedelta(days=1), -27.0, 33.0),
        (today, -27.0, 33.0),
    ]
    figure = logged_in.get("/", {"range": "7d", "environment": "prod"}).context["figures"]["requests"]
    upper, lower = _kind(figure, "band")
    assert upper["y"] == [33.0, 33.0, 33.0]
    assert lower["y"] == [0.0, 0.0, 0.0]
    assert upper["x"] == [(today - timedelta(days=d)).strftime("%Y-%m-%d %H:%M") for d in (2, 1, 0)]
