"""Roles in a real browser: a viewer and an admin log in through /login. Any console error fails,
and a CSP violation is a console error, so these also prove the policy fits our pages.
Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import pytest

from tests.dashboard.conftest import PASSWORD, SCREENSHOTS

pytestmark = pytest.mark.browser

ADMIN_LINKS = ("Keys", "Prices", "Retention", "Members")


def log_in(page, base_url: str, username: str, password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base_url}/spend")  # not logged in: sent to /login?next=/spend
    assert "/login?next=" in page.url
    page.screenshot(path=str(SCREENSHOTS / "login.png"), full_page=True)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base_url}/spend")


def charts_drawn(page) -> int:  # type: ignore[no-untyped-def]
    charts = page.locator("[data-figure]")
    for i in range(charts.count()):
        charts.nth(i).locator(".main-svg").first.wait_for(state="attached")
    return charts.count()


def test_a_viewer_sees_the_dashboards_but_cannot_manage(live_server, seeded, viewer_user, browser_page):
    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    for path in ("/spend", "/"):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        assert charts_drawn(page) >= 3, path
        nav = page.locator("nav.nav")
        for link in ADMIN_LINKS:
            assert nav.get_by_role("link", name=link).count() == 0, (path, link)
    page.screenshot(path=str(SCREENSHOTS / "viewer-overview.png"), full_page=True)
    assert page.errors == []
    response = page.goto(f"{live_server.url}/projects/acme/keys")
    assert response.status == 403
    assert "You can't open this page" in page.locator("main").text_content()
    page.screenshot(path=str(SCREENSHOTS / "viewer-keys-403.png"), full_page=True)
    # Chromium reports the refused document itself as a failed resource; nothing else may show.
    assert all("status of 403" in e for e in page.errors), page.errors


def test_an_admin_creates_a_key_sees_it_once_and_revokes_it(live_server, seeded, viewer_user, browser_page):
    from projects.models import IngestKey, Membership

    Membership.objects.filter(user=viewer_user).update(role=Membership.Role.ADMIN)
    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    charts_drawn(page)
    page.locator("nav.nav").get_by_role("link", name="Keys").click()
    page.wait_for_url(f"{live_server.url}/projects/acme/keys")
    page.fill("#id_environment", "staging")
    page.select_option("#id_scope", "read")
    page.fill("#id_name", "grafana")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("[data-secret]").text_content().strip()
    assert secret.startswith("tly_")
    page.screenshot(path=str(SCREENSHOTS / "admin-key-created.png"), full_page=True)
    page.get_by_role("link", name="Done").click()
    page.wait_for_url(f"{live_server.url}/projects/acme/keys")
    assert secret not in page.content()
    key = IngestKey.objects.get(name="grafana")
    row = page.locator(f"tr[data-key='{key.prefix}']")
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_load_state("networkidle")
    assert "is revoked" in page.locator(".messages").text_content()
    assert page.locator(f"tr[data-key='{key.prefix}'] .badge-bad").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "admin-keys.png"), full_page=True)
    for link in ("Prices", "Retention", "Members"):
        page.locator("nav.nav").get_by_role("link", name=link).click()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(SCREENSHOTS / f"admin-{link.lower()}.png"), full_page=True)
    assert page.errors == []


def test_form_errors_look_the_same_on_the_login_and_project_pages(live_server, viewer_user, browser_page):
    from projects.models import Membership

    Membership.objects.filter(user=viewer_user).update(role=Membership.Role.ADMIN)
    page = browser_page
    page.goto(f"{live_server.url}/login")
    page.fill("#id_username", viewer_user.username)
    page.fill("#id_password", "not-the-password")
    page.click("form button[type=submit]")
    notice = page.locator("[data-form-errors]")
    assert notice.locator("strong").text_content() == "Not logged in."
    assert "Please enter a correct username and password" in notice.text_content()
    page.screenshot(path=str(SCREENSHOTS / "login-error.png"), full_page=True)
    log_in(page, live_server.url, viewer_user.username)
    page.goto(f"{live_server.url}/projects/acme/prices")
    page.fill("#id_model", "claude-custom")
    page.fill("#id_input_usd_per_mtok", "-1")
    page.get_by_role("button", name="Add override").click()
    page.wait_for_load_state("networkidle")
    assert "Nothing was saved." in page.locator("[data-form-errors]").text_content()
    invalid = page.locator(".field-invalid")
    assert invalid.count() >= 1
    # The shared partial's marks are styled on these pages too: the invalid input's border is red.
    border = invalid.first.locator("input").evaluate("e => getComputedStyle(e).borderTopColor")
    assert border == "rgb(185, 28, 28)", border
    page.screenshot(path=str(SCREENSHOTS / "admin-prices-errors.png"), full_page=True)
    assert all("status of 400" in e for e in page.errors), page.errors
