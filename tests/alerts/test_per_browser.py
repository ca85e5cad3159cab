"""A per-user rule made through the form in a real browser: the `per` select, its 400-style error
next to itself, then the rules list and the rule's history naming each breaching user."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from django.utils import timezone

from alerts.models import AlertRule
from alerts.services import rules_evaluate
from projects.services import ingest_key_create
from tests.alerts.test_browser import acme, log_in, shot, user
from tests.rollups.helpers import spend_dollars

pytestmark = pytest.mark.browser
__all__ = ["acme"]


def test_admin_creates_a_per_user_rule_and_sees_each_user(live_server, acme, clean_events, django_user_model, browser):
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    now = timezone.now()
    spend_dollars(key, 6, when=now, prefix="h", user_id="u_heavy")
    spend_dollars(key, 1, when=now, prefix="l", user_id="u_light")
    page = browser
    user(django_user_model, acme, "ada", "admin")
    log_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/alerts/new?project=acme")
    page.fill("#id_name", "Any single user over $5 a day")
    page.select_option("#id_metric", "cost_usd")
    page.select_option("#id_window", "hour")
    page.select_option("#id_condition", "above")
    page.fill("#id_threshold", "5")
    page.select_option("#id_per", "user_id")
    page.fill("#id_recipients", "oncall@example.com")
    page.click("form[data-form=rule] button[type=submit]")
    page.wait_for_selector("[data-error-for=per]")
    assert "the window must be day" in page.locator("[data-error-for=per]").text_content()
    assert AlertRule.objects.count() == 0

    page.select_option("#id_window", "day")
    page.click("form[data-form=rule] button[type=submit]")
    page.wait_for_url(lambda url: urlparse(url).path == "/alerts/")
    rule = AlertRule.objects.get()
    assert (rule.per, rule.window, rule.threshold) == ("user_id", "day", 5.0)
    row = page.locator("table.rules tbody tr", has_text="Any single user over $5 a day")
    assert "whole project · per user" in row.text_content()

    assert rules_evaluate(now=now) == {"opened": 1}
    page.goto(f"{live_server.url}/alerts/{rule.pk}/")
    assert page.locator("[data-per]").text_content().startswith("user")
    values = [cell.text_content() for cell in page.locator("td[data-value]").all()]
    assert values == ["u_heavy"]
    shot(page, "per-user-history")
