"""Alert emails explain and link (issue 12 items 3 and 4): where the window's value came from,
by share, whatever the baseline; error types and statuses for error-rate rules; links to the
metric's page at the incident's window and to the calls behind it (agreements 2 and 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core import mail

from alerts import formatting
from alerts.models import AlertRule, Budget, Incident, Notification
from alerts.selectors import Contributor, ErrorCount, budget_status, contributors
from alerts.services import budgets_check, digest_context, rules_evaluate
from projects.services import ingest_key_create, project_get_or_create
from rollups.services import rollup_until_current
from tests.rollups.helpers import ingest

pytestmark = pytest.mark.usefixtures("clean_events")

BASE = "https://tally.example.com"


@pytest.fixture(autouse=True)
def _base_url(settings):  # type: ignore[no-untyped-def]
    settings.TALLY_BASE_URL = BASE + "/"  # a trailing slash must not double up


@pytest.fixture
def key(transactional_db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod").key


def calls(
    prefix: str,
    hour: datetime,
    n: int,
    *,
    model: str,
    service: str = "default",
    tokens: int = 100_000,
    error: tuple[str, int] | None = None,
    feature: str = "",
) -> list[dict]:
    events = []
    for i in range(n):
        event = {
            "request_id": f"{prefix}{i}",
            "model": model,
            "service": service,
            "latency_ms": 900,
            "input_tokens": tokens,
            "timestamp": (hour + timedelta(seconds=20 * i + 1)).isoformat(),
        }
        if feature:
            event["feature"] = feature
        if error:
            event.update(status="error", error_type=error[0], http_status=error[1], input_tokens=0)
        events.append(event)
    return events


def text_of(notification: Notification) -> str:
    return notification.body_text.replace("\r\n", "\n")


def hours() -> tuple[datetime, datetime]:
    """(evaluation instant, the hour it judges): 5 past the current hour, the hour before it."""
    now = datetime.now(tz=UTC).replace(minute=5, second=0, microsecond=0)
    return now, now.replace(minute=0) - timedelta(hours=1)


# --- contributors ----------------------------------------------------------------------


def test_spend_with_nothing_a_day_earlier_names_the_model_and_service_it_all_came_from(key):
    """The issue's case: $8.00 in an hour, all claude-opus-4-7 from checkout, an empty day before."""
    now, closed = hours()
    # Opus 4.7 input is $5 / MTok: 16 calls of 100k tokens cost $8.00.
    ingest(key, calls("o", closed, 16, model="claude-opus-4-7", service="checkout"))
    rollup_until_current()
    rule = AlertRule.objects.create(
        project=key.project,
        name="Prod spend per hour",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=5,
        environment="prod",
        recipients=["oncall@example.com"],
    )
    day_before = closed - timedelta(days=1)
    found = contributors(
        rule,
        start=closed,
        end=closed + timedelta(hours=1),
        before_start=day_before,
        before_end=day_before + timedelta(hours=1),
    )
    assert found.compared is False
    assert found.errors == []
    assert found.contributors == [
        Contributor("model", "claude-opus-4-7", 8.0, 1.0),
        Contributor("service", "checkout", 8.0, 1.0),
    ]

    assert rules_evaluate(now=now) == {"opened": 1}
    text = text_of(Notification.objects.get(kind="incident_opened"))
    assert (
        "Where it came from (the same window a day earlier had no calls to compare with):\n"
        "  - model claude-opus-4-7 $8.00, 100%\n"
        "  - service checkout $8.00, 100%\n\n"
    ) in text
    assert "stands out" not in text
    html = Notification.objects.get(kind="incident_opened").body_html
    assert "<td>model</td><td>claude-opus-4-7</td><td>$8.00</td><td>100%</td><td></td><td></td>" in html


def test_error_rate_anomaly_names_the_error_type_and_http_status(key):
    """The issue's case: an anomaly email for 40% errors, all overloaded_error / 529."""
    now, closed = hours()
    # Eight days of the same hour, 20 calls each and no errors: the baseline is 0%.
    for day in range(1, 9):
        ingest(
            key,
            calls(
                f"h{day}-",
                closed - timedelta(days=day),
                20,
                model="claude-sonnet-4-6",
                service="search",
                feature="answer",
            ),
        )
    ingest(key, calls("ok", closed, 60, model="claude-sonnet-4-6", service="search", feature="answer"))
    ingest(
        key,
        calls(
            "err",
            closed + timedelta(minutes=30),
            40,
            model="claude-sonnet-4-6",
            service="search",
            feature="answer",
            error=("overloaded_error", 529),
        ),
    )
    rollup_until_current()
    AlertRule.objects.create(
        project=key.project,
        name="Prod error rate",
        metric="error_rate",
        window="hour",
        condition="anomaly",
        sensitivity=3,
        environment="prod",
        recipients=["oncall@example.com"],
    )

    assert rules_evaluate(now=now) == {"opened": 1}
    incident = Incident.objects.get()
    assert incident.value == pytest.approx(0.4)
    assert incident.baseline == 0.0
    assert incident.detail["compared"] is True
    assert incident.detail["errors"] == [
        ErrorCount("type", "overloaded_error", 40, 1.0, 0).as_dict(),
        ErrorCount("status", "529", 40, 1.0, 0).as_dict(),
    ]
    notification = Notification.objects.get(kind="incident_opened")
    assert notification.subject == "[Tally] prod: error rate 40.0% > baseline 0.0%"
    text = text_of(notification)
    # Each value's error rate, its share of the errors, and its own move from 0% (of 20 calls) a day earlier.
    assert (
        "Where it came from (and the change vs the same window a day earlier):\n"
        "  - model claude-sonnet-4-6 40.0%, 100% of errors (0.0% a day earlier, +40.0%)\n"
        "  - service search 40.0%, 100% of errors (0.0% a day earlier, +40.0%)\n"
        "  - feature answer 40.0%, 100% of errors (0.0% a day earlier, +40.0%)\n\n"
        "Errors by kind:\n"
        "  - error type overloaded_error: 40 calls, 100% of errors (0 a day earlier)\n"
        "  - HTTP status 529: 40 calls, 100% of errors (0 a day earlier)\n"
    ) in text
    window = f"from={closed:%Y-%m-%dT%H}:00:00Z&to={closed + timedelta(hours=1):%Y-%m-%dT%H}:00:00Z"
    assert f"See the calls: {BASE}/events?project=acme&{window}&environment=prod&status=error\n" in text
    assert f"Dashboard for this window: {BASE}/errors?project=acme&{window}&environment=prod\n" in text
    html = notification.body_html.replace("&amp;", "&")
    assert (
        f'<a href="{BASE}/errors?project=acme&{window}&environment=prod">Open the dashboard for this window</a> · '
        f'<a href="{BASE}/events?project=acme&{window}&environment=prod&status=error">See the calls</a>'
    ) in html
    assert "<td>error type</td><td>overloaded_error</td><td>40</td><td>100%</td><td>0</td>" in html


def test_two_models_against_a_baseline_give_share_and_change(key):
    now, closed = hours()
    day_before = closed - timedelta(days=1)
    # Sonnet input is $3 / MTok, Haiku 4.5 $1 / MTok: 100k-token calls cost $0.30 and $0.10.
    ingest(
        key,
        calls("s", closed, 20, model="claude-sonnet-4-6")
        + calls("h", closed + timedelta(minutes=30), 20, model="claude-haiku-4-5"),
    )
    ingest(
        key,
        calls("ys", day_before, 10, model="claude-sonnet-4-6")
        + calls("yh", day_before + timedelta(minutes=30), 20, model="claude-haiku-4-5"),
    )
    rollup_until_current()
    rule = AlertRule.objects.create(
        project=key.project,
        name="Spend",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=7,
        recipients=["oncall@example.com"],
    )
    found = contributors(
        rule,
        start=closed,
        end=closed + timedelta(hours=1),
        before_start=day_before,
        before_end=day_before + timedelta(hours=1),
    )
    assert found.compared is True
    assert [
        (c.dimension, c.value, round(c.now, 6), c.share, round(c.before or 0, 6), round(c.change or 0, 6))
        for c in found.contributors
    ] == [
        ("model", "claude-sonnet-4-6", 6.0, 0.75, 3.0, 3.0),
        ("model", "claude-haiku-4-5", 2.0, 0.25, 2.0, 0.0),
        ("service", "default", 8.0, 1.0, 5.0, 3.0),
    ]

    assert rules_evaluate(now=now) == {"opened": 1}
    text = text_of(Notification.objects.get(kind="incident_opened"))
    assert (
        "  - model claude-sonnet-4-6 $6.00, 75% ($3.00 a day earlier, +$3.00)\n"
        "  - model claude-haiku-4-5 $2.00, 25% ($2.00 a day earlier, +$0.00)\n"
        "  - service default $8.00, 100% ($5.00 a day earlier, +$3.00)\n"
    ) in text


def test_more_values_than_shown_keep_the_top_three_and_the_biggest_drop(key):
    now, closed = hours()
    day_before = closed - timedelta(days=1)
    # Four services now ($0.40, $0.30, $0.20, $0.10); a fifth, "legacy", spent $0.50 yesterday and nothing now.
    for i, (service, n) in enumerate((("a", 4), ("b", 3), ("c", 2), ("d", 1))):
        ingest(
            key,
            calls(
                f"{service}-",
                closed + timedelta(minutes=10 * i),
                n,
                model="claude-haiku-4-5",
                service=service,
                tokens=100_000,
            ),
        )
    ingest(key, calls("legacy-", day_before, 5, model="claude-haiku-4-5", service="legacy"))
    rollup_until_current()
    rule = AlertRule(project=key.project, metric="cost_usd", window="hour")
    found = contributors(
        rule,
        start=closed,
        end=closed + timedelta(hours=1),
        before_start=day_before,
        before_end=day_before + timedelta(hours=1),
    )
    services = [
        (c.value, round(c.now, 6), round(c.share, 6), round(c.change or 0, 6))
        for c in found.contributors
        if c.dimension == "service"
    ]
    assert services == [("a", 0.4, 0.4, 0.4), ("b", 0.3, 0.3, 0.3), ("c", 0.2, 0.2, 0.2), ("legacy", 0.0, 0.0, -0.5)]


# --- links -----------------------------------------------------------------------------


def _incident(rule: AlertRule, start: datetime, resolved_at: datetime | None = None) -> Incident:
    return Incident(
        rule=rule,
        window_start=start,
        opened_at=start + timedelta(hours=1, minutes=2),
        resolved_at=resolved_at,
        value=1.0,
        threshold=0.5,
    )


@pytest.mark.parametrize(
    ("metric", "page", "calls_extra"),
    [
        ("cost_usd", "/spend", "&sort=cost"),
        ("requests", "/", ""),
        ("error_rate", "/errors", "&status=error"),
        ("latency_p95_ms", "/latency", "&sort=latency"),
        ("latency_avg_ms", "/latency", "&sort=latency"),
        ("ttft_p95_ms", "/latency", "&sort=latency"),
        ("cache_hit_rate", "/cache", ""),
    ],
)
def test_hour_rule_links_open_the_metrics_page_at_the_incidents_hour(db, metric, page, calls_extra):
    project = project_get_or_create(slug="shop")
    rule = AlertRule(
        project=project, metric=metric, window="hour", environment="prod", service="checkout", model="claude-opus-4-7"
    )
    links = formatting.incident_links(_incident(rule, datetime(2026, 12, 3, 1, tzinfo=UTC)))
    scope = (
        "project=shop&from=2026-12-03T01:00:00Z&to=2026-12-03T02:00:00Z"
        "&environment=prod&service=checkout&model=claude-opus-4-7"
    )
    assert links == {"dashboard": f"{BASE}{page}?{scope}", "calls": f"{BASE}/events?{scope}{calls_extra}"}


def test_resolved_and_open_incidents_link_their_whole_span(db):
    project = project_get_or_create(slug="shop")
    rule = AlertRule(project=project, metric="requests", window="hour")
    start = datetime(2026, 12, 3, 1, tzinfo=UTC)
    # Resolved at 04:10: the 03:00 window was judged fine, so 01:00-03:00 breached.
    resolved = _incident(rule, start, resolved_at=datetime(2026, 12, 3, 4, 10, tzinfo=UTC))
    assert (
        formatting.incident_links(resolved, absolute=False)["dashboard"]
        == "/?project=shop&from=2026-12-03T01:00:00Z&to=2026-12-03T03:00:00Z"
    )
    # Resolved the hour after it opened: never shorter than its first window.
    quick = _incident(rule, start, resolved_at=datetime(2026, 12, 3, 2, 30, tzinfo=UTC))
    assert (
        formatting.incident_links(quick, absolute=False)["calls"]
        == "/events?project=shop&from=2026-12-03T01:00:00Z&to=2026-12-03T02:00:00Z"
    )
    # Still open at 05:20 (the incident page): up to the end of the current hour.
    still_open = _incident(rule, start)
    assert formatting.incident_links(still_open, now=datetime(2026, 12, 3, 5, 20, tzinfo=UTC), absolute=False) == {
        "dashboard": "/?project=shop&from=2026-12-03T01:00:00Z&to=2026-12-03T06:00:00Z",
        "calls": "/events?project=shop&from=2026-12-03T01:00:00Z&to=2026-12-03T06:00:00Z",
    }


def test_day_rule_links_chart_the_week_ending_with_the_incidents_day(db):
    project = project_get_or_create(slug="shop")
    rule = AlertRule(project=project, metric="cost_usd", window="day", service="summarizer")
    links = formatting.incident_links(_incident(rule, datetime(2026, 12, 2, tzinfo=UTC)))
    assert links == {
        "dashboard": f"{BASE}/spend?project=shop&from=2026-11-26T00:00:00Z&to=2026-12-03T00:00:00Z&service=summarizer",
        "calls": f"{BASE}/events?project=shop&from=2026-12-02T00:00:00Z&to=2026-12-03T00:00:00Z"
        "&service=summarizer&sort=cost",
    }


def test_budget_email_links_the_spend_page_over_its_period(key):
    now = datetime.now(tz=UTC)
    ingest(
        key,
        calls(
            "b",
            now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1),
            9,
            model="claude-haiku-4-5",
            service="checkout",
            tokens=1_000_000,
        ),
    )
    rollup_until_current()
    budget = Budget.objects.create(
        project=key.project,
        name="Checkout",
        period="day",
        limit_usd=Decimal(10),
        environment="prod",
        service="checkout",
        recipients=["finance@example.com"],
    )
    assert budgets_check(now=now) == 1
    status = budget_status(budget, now=now)
    day = f"from={status.period_start:%Y-%m-%d}T00:00:00Z&to={status.period_end:%Y-%m-%d}T00:00:00Z"
    text = text_of(Notification.objects.get(kind="budget"))
    assert f"Dashboard: {BASE}/spend?project=acme&{day}&environment=prod&service=checkout\n" in text
    assert (
        f"The most expensive calls: {BASE}/events?project=acme&{day}&environment=prod&service=checkout&sort=cost\n"
        in text
    )
    assert len(mail.outbox) == 1


def test_per_user_budget_links_with_the_user_filter(db):
    project = project_get_or_create(slug="shop")
    budget = Budget(project=project, name="Heavy user", period="month", limit_usd=Decimal(5), user_id="u_0001")
    status = SimpleNamespace(
        budget=budget,
        spent_usd=Decimal(4),
        projected_usd=Decimal(40),
        period_start=datetime(2026, 12, 1, tzinfo=UTC),
        period_end=datetime(2027, 1, 1, tzinfo=UTC),
    )
    context = formatting.budget_context(status, 80)
    month = "project=shop&from=2026-12-01T00:00:00Z&to=2027-01-01T00:00:00Z&user=u_0001"
    assert (context["link"], context["calls_link"]) == (f"{BASE}/spend?{month}", f"{BASE}/events?{month}&sort=cost")


def test_digest_links_the_overview_over_its_eight_days(db):
    project = project_get_or_create(slug="shop")
    context = digest_context(project_id=project.pk, project_slug="shop", day=datetime(2026, 12, 2, tzinfo=UTC))
    assert context["link"] == f"{BASE}/?project=shop&from=2026-11-25T00:00:00Z&to=2026-12-03T00:00:00Z"
    assert context["project"] == "shop"
