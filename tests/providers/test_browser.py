"""The Reconciliation page in Chromium with the crafted day: the table, the totals and what the
differences mean, with no console error (so no CSP violation either). Screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

import pytest

from providers.services import provider_usage_sync
from tests.dashboard.conftest import PASSWORD, SCREENSHOTS

pytestmark = pytest.mark.browser


def test_reconciliation_page_with_the_crafted_day(live_server, crafted_day, connected, browser_page, django_user_model):
    from projects.models import Membership

    assert provider_usage_sync(connection=connected).ok
    user = django_user_model.objects.create_user("lead", "lead@example.com", PASSWORD)
    Membership.objects.create(user=user, project=connected.project, role=Membership.Role.ADMIN)
    page = browser_page
    page.goto(f"{live_server.url}/login?next=/")
    page.fill("#id_username", "lead")
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.locator("nav.nav").get_by_role("link", name="Reconciliation").click()
    page.wait_for_url(f"{live_server.url}/reconciliation?project=acme")
    day = crafted_day.day.isoformat()
    page.fill("input[name=from]", day)
    page.fill("input[name=to]", day)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**/reconciliation?project=acme&from={day}&to={day}")

    rows = page.locator("table.reconciliation tbody tr")
    assert rows.count() == 3
    verdicts = {rows.nth(i).get_attribute("data-model"): rows.nth(i).get_attribute("data-verdict") for i in range(3)}
    assert verdicts == {"claude-haiku-4-5": "unmetered", "claude-opus-4-1": "unmetered", "claude-sonnet-4-6": "price"}
    opus = page.locator("tr[data-model='claude-opus-4-1']")
    assert opus.locator("[data-coverage]").text_content().strip() == "0.0%"
    assert opus.locator("[data-unmetered-cost]").text_content().strip() == "$0.2250"
    sonnet = page.locator("tr[data-model='claude-sonnet-4-6']")
    assert sonnet.locator("[data-coverage]").text_content().strip() == "75.0%"
    tiles = {
        k: page.locator(f"[data-kpi='{k}'] .tile-value").text_content().strip()
        for k in ("provider_cost", "tally_cost", "coverage", "unmetered")
    }
    # $2.045 shows as $2.05: the usd filter rounds half up as a bill does (a float's 2.045 is 2.04499...)
    assert tiles == {"provider_cost": "$2.05", "tally_cost": "$1.13", "coverage": "55.1%", "unmetered": "$0.9175"}
    unmetered = page.locator("[data-unmetered]").text_content()
    assert "claude-haiku-4-5 ($0.3875)" in " ".join(unmetered.split())
    price = page.locator("[data-price-difference]")
    assert "the tokens agree but Anthropic billed $1.22 and Tally priced $0.9150" in " ".join(
        price.text_content().split()
    )
    price.get_by_role("link", name="Prices page").click()
    page.wait_for_url(f"{live_server.url}/projects/acme/prices")
    page.go_back()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SCREENSHOTS / "reconciliation.png"), full_page=True)

    page.locator("nav.nav").get_by_role("link", name="Provider").click()
    page.wait_for_url(f"{live_server.url}/projects/acme/provider")
    assert page.locator("[data-key-last4]").text_content().strip() == "…XYZ9"
    assert "sk-ant-admin01" not in page.content()
    page.screenshot(path=str(SCREENSHOTS / "provider-settings.png"), full_page=True)
    assert page.errors == []
