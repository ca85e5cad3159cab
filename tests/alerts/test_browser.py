"""The alerts pages in a real browser, under the real CSP: an admin creates a rule through the
form, a viewer only reads. Screenshots go to test-artifacts/screenshots/alerts-*.png."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import transaction
from django.shortcuts import resolve_url
from django.utils import timezone

from alerts import formatting, outbox
from alerts.models import AlertRule, Budget, Incident, Notification
from projects.models import Membership
from projects.services import environment_get_or_create, ingest_key_create, project_get_or_create
from tests.dashboard.conftest import SCREENSHOTS
from tests.rollups.helpers import spend_dollars

pytestmark = pytest.mark.browser

PASSWORD = "alerts-browser-pass-42"


@pytest.fixture
def acme(transactional_db):  # type: ignore[no-untyped-def]
    project = project_get_or_create(slug="acme")
    environment_get_or_create(project=project, name="prod")
    return project


@pytest.fixture
def spent_11_usd(acme, clean_events):  # type: ignore[no-untyped-def]
    """$11 of calls in acme/prod today, rolled up: Haiku 4.5 input is $1 per million tokens."""
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    now = timezone.now()
    spend_dollars(key, 11, when=now)


def user(django_user_model, project, name: str, role: str):  # type: ignore[no-untyped-def]
    created = django_user_model.objects.create_user(name, f"{name}@example.com", PASSWORD)
    Membership.objects.create(user=created, project=project, role=role)
    return created


def log_in(page, base_url: str, username: str) -> None:  # type: ignore[no-untyped-def]
    """Open a protected page, follow the redirect to whatever LOGIN_URL is, log in, come back."""
    page.goto(f"{base_url}/alerts/")
    page.wait_for_selector("input[name=username]")
    assert urlparse(page.url).path == resolve_url(settings.LOGIN_URL)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("input[name=password]").press("Enter")
    page.wait_for_url(lambda url: urlparse(url).path == "/alerts/")


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(SCREENSHOTS / f"alerts-{name}.png"), full_page=True)


def history(rule: AlertRule) -> Notification:
    """A resolved incident that emailed, an open one the cooldown kept quiet, and the first one's
    email rendered by the real templates, then failed for good."""
    now = timezone.now().replace(second=0, microsecond=0)
    hour = now.replace(minute=0) - timedelta(hours=5)
    contributors = [
        {
            "dimension": "model",
            "value": "claude-sonnet-4-6",
            "now": 31.4,
            "share": 0.835,
            "before": 6.2,
            "change": 25.2,
        },
        {"dimension": "model", "value": "claude-haiku-4-5", "now": 6.2, "share": 0.165, "before": 6.0, "change": 0.2},
        {"dimension": "service", "value": "search", "now": 37.6, "share": 1.0, "before": 12.2, "change": 25.4},
    ]
    first = Incident.objects.create(
        rule=rule,
        window_start=hour,
        opened_at=hour + timedelta(hours=1, minutes=1),
        resolved_at=hour + timedelta(hours=3, minutes=1),
        value=37.6,
        threshold=25,
        detail={"contributors": contributors, "errors": [], "compared": True},
    )
    Incident.objects.create(
        rule=rule,
        window_start=hour + timedelta(hours=4),
        opened_at=now,
        value=28.1,
        threshold=25,
        notified=False,
        detail={"contributors": []},
    )
    with transaction.atomic():
        email = outbox.notification_queue(
            project_id=rule.project_id,
            kind=Notification.Kind.INCIDENT_OPENED,
            dedupe_key=f"incident:{first.pk}:opened",
            recipients=rule.recipients,
            incident=first,
            template="incident_opened",
            context=formatting.incident_context(first),
        )
    assert email is not None
    Notification.objects.filter(pk=email.pk).update(
        sent_at=None,
        attempts=8,
        failed_at=now,
        last_error="SMTPRecipientsRefused: {'oncall@example.com': (550, b'5.1.1 mailbox unavailable')}",
    )
    return email


def test_admin_creates_a_rule_and_works_the_pages(live_server, acme, spent_11_usd, django_user_model, browser):
    page = browser
    user(django_user_model, acme, "ada", "admin")
    log_in(page, live_server.url, "ada")
    response = page.goto(f"{live_server.url}/alerts/")
    if "csp.middleware.CSPMiddleware" in settings.MIDDLEWARE:  # these pages run under the real policy
        assert "script-src 'self'" in response.headers["content-security-policy"]

    page.click("[data-action=new-rule]")
    page.wait_for_url(lambda url: urlparse(url).path == "/alerts/new")
    # First a bad submit: every bad field is named next to itself and nothing is saved.
    page.select_option("#id_metric", "error_rate")
    page.select_option("#id_window", "hour")
    page.select_option("#id_condition", "above")
    page.fill("#id_threshold", "5")
    page.fill("#id_recipients", "oncall@example.com, oncall@")
    page.click("form[data-form=rule] button[type=submit]")
    page.wait_for_selector("[data-form-errors]")
    errors = {e.get_attribute("data-error-for") for e in page.locator("[data-error-for]").all()}
    assert errors == {"name", "threshold", "recipients"}
    assert AlertRule.objects.count() == 0
    shot(page, "rule-form-errors")

    page.fill("#id_name", "Prod error rate")
    page.fill("#id_threshold", "0.05")
    page.fill("#id_environment", "prod")
    page.fill("#id_recipients", "oncall@example.com")
    page.click("form[data-form=rule] button[type=submit]")
    page.wait_for_url(lambda url: urlparse(url).path == "/alerts/")
    row = page.locator("table.rules tbody tr", has_text="Prod error rate")
    assert row.count() == 1
    assert "5.0%" in row.text_content()
    assert "env prod" in row.text_content()
    rule = AlertRule.objects.get()
    assert (rule.threshold, rule.environment, rule.recipients) == (0.05, "prod", ["oncall@example.com"])

    spend = AlertRule.objects.create(
        project=acme,
        name="Prod spend per hour",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=25,
        environment="prod",
        recipients=["oncall@example.com", "finance@example.com"],
        last_evaluated_at=timezone.now(),
    )
    failed = history(spend)
    page.reload()
    shot(page, "rules")

    page.click("table.rules >> text=Prod spend per hour")
    page.wait_for_selector("table.incidents")
    assert page.locator("table.incidents tbody tr").count() == 2
    assert "suppressed by cooldown" in page.text_content("table.incidents")
    assert "claude-sonnet-4-6 $31.40, 84% ($6.20 a day earlier, +$25.20)" in " ".join(
        page.text_content("table.incidents").split()
    )
    # Resolved two hours after its window opened: the chart and the calls cover 2 hours, in the rule's scope.
    first = spend.incidents.order_by("window_start").first()
    span = (
        f"from={first.window_start:%Y-%m-%dT%H}:00:00Z&to={first.window_start + timedelta(hours=2):%Y-%m-%dT%H}:00:00Z"
    )
    row = page.locator(f"tr[data-incident='{first.pk}']")
    assert row.locator("[data-link=dashboard]").get_attribute("href") == f"/spend?project=acme&{span}&environment=prod"
    assert (
        row.locator("[data-link=calls]").get_attribute("href")
        == f"/events?project=acme&{span}&environment=prod&sort=cost"
    )
    shot(page, "rule-history")

    Budget.objects.create(
        project=acme, name="Daily cap", period="day", limit_usd=Decimal(10), recipients=["finance@example.com"]
    )
    page.click("nav.tabs >> text=Budgets")
    page.fill("#id_name", "Monthly cap")
    page.select_option("#id_period", "month")
    page.fill("#id_limit_usd", "500")
    page.fill("#id_recipients", "finance@example.com")
    page.click("#new-budget button[type=submit]")
    page.wait_for_selector("table.budgets")
    daily = page.locator("tr", has_text="Daily cap").text_content()
    assert "$11.00" in daily
    assert "exceeded" in daily
    monthly = page.locator("tr", has_text="Monthly cap").text_content()
    assert "$11.00" in monthly
    assert "within" in monthly
    assert Budget.objects.get(name="Monthly cap").limit_usd == Decimal(500)
    shot(page, "budgets")

    page.click("nav.tabs >> text=Daily digest")
    page.fill("#id_recipients", "team@example.com")
    page.check("#id_enabled")
    page.click("[data-form=digest] button[type=submit]")
    page.wait_for_selector("[data-digest-state] >> text=sent to team@example.com")
    shot(page, "digest")

    page.click("nav.tabs >> text=Outbox")
    failed_row = page.locator(f"tr[data-notification='{failed.pk}']")
    assert "failed" in failed_row.text_content()
    assert "SMTPRecipientsRefused" in failed_row.text_content()
    shot(page, "outbox")
    failed_row.locator("a").click()
    page.wait_for_selector("iframe.mail-html")
    assert "Prod spend per hour fired" in page.text_content("[data-body=text]")
    # The HTML body is drawn inside the sandboxed frame, not in the page.
    assert "Prod spend per hour fired" in page.frame_locator("iframe.mail-html").locator("h2").text_content()
    assert page.locator("iframe.mail-html").get_attribute("sandbox") == ""
    # Chromium's full-page capture lays a sandboxed (out-of-process) frame out wrong: a tall
    # viewport instead, so the screenshot shows the frame as people see it.
    page.set_viewport_size({"width": 1400, "height": 1200})
    page.screenshot(path=str(SCREENSHOTS / "alerts-notification.png"))

    assert page.errors == []


def test_a_viewer_reads_but_cannot_create(live_server, acme, django_user_model, browser):
    page = browser
    user(django_user_model, acme, "vic", "viewer")
    AlertRule.objects.create(
        project=acme,
        name="Prod spend per hour",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=25,
        recipients=["oncall@example.com"],
    )
    log_in(page, live_server.url, "vic")
    assert page.locator("table.rules tbody tr").count() == 1
    assert page.locator("[data-action=new-rule]").count() == 0
    assert page.locator("text=New rule").count() == 0
    assert page.locator("table.rules a:has-text('Edit'), table.rules button").count() == 0
    assert page.locator("[data-role=view-only]").is_visible()
    shot(page, "viewer")
    assert page.errors == []

    response = page.goto(f"{live_server.url}/alerts/new?project=acme")
    assert response is not None
    assert response.status == 403
    shot(page, "viewer-403")
    assert AlertRule.objects.count() == 1
    # Chromium logs the refused page itself; nothing else may show up.
    assert page.errors == ["console: Failed to load resource: the server responded with a status of 403 (Forbidden)"]
