"""The pages in a real browser: login form, charts drawn by Plotly, filters, explorer. Screenshots
of every page go to test-artifacts/screenshots/ for people to look at."""

from __future__ import annotations

import json

import pytest

from tests.dashboard.conftest import PASSWORD, SCREENSHOTS

pytestmark = pytest.mark.browser

# page name -> (path, number of charts on it)
PAGES = {
    "overview": ("/", 6),
    "spend": ("/spend", 3),
    "latency": ("/latency", 4),
    "errors": ("/errors", 4),
    "cache": ("/cache", 3),
    "events": ("/events", 0),
}


def log_in(page, base_url: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base_url}/login?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base_url}/")
    assert page.errors == [], page.errors


def assert_charts_drawn(page) -> int:  # type: ignore[no-untyped-def]
    """Every chart placeholder holds a Plotly SVG; returns how many charts there are."""
    charts = page.locator("[data-figure]")
    count = charts.count()
    for i in range(count):
        charts.nth(i).locator(".main-svg").first.wait_for(state="attached")
        assert charts.nth(i).locator(".main-svg").count() >= 1, charts.nth(i).get_attribute("data-figure")
    return count


def figure(page, figure_id: str) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(page.locator(f"script#{figure_id}").text_content())


def test_every_page_draws_its_charts_without_errors(live_server, seeded, viewer_user, browser_page):
    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    for name, (path, charts) in PAGES.items():
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        assert assert_charts_drawn(page) == charts, name
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        assert page.errors == [], f"{name}: {page.errors}"


def test_filter_changes_update_the_charts(live_server, seeded, viewer_user, browser_page):
    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    assert_charts_drawn(page)
    before = figure(page, "fig-requests")
    assert sum(before["data"][0]["y"]) == 6
    assert page.locator("[data-kpi=requests] .tile-value").text_content().strip() == "6"

    page.select_option("select[name=model]", "claude-haiku-4-5")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "model=claude-haiku-4-5" in page.url
    assert_charts_drawn(page)
    assert sum(figure(page, "fig-requests")["data"][0]["y"]) == 2
    assert page.locator("[data-kpi=requests] .tile-value").text_content().strip() == "2"

    page.select_option("select[name=range]", "24h")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert_charts_drawn(page)
    hourly = figure(page, "fig-requests")
    assert len(hourly["data"][0]["x"]) == 24  # hourly buckets now, and req_old (26 h ago) is out
    assert sum(hourly["data"][0]["y"]) == 1
    # The filters follow the navigation.
    page.click("nav.nav >> text=Latency")
    page.wait_for_load_state("networkidle")
    assert "range=24h" in page.url
    assert "model=claude-haiku-4-5" in page.url
    assert_charts_drawn(page)
    page.screenshot(path=str(SCREENSHOTS / "latency-filtered.png"), full_page=True)
    assert page.errors == []


def test_explorer_finds_a_request_id_and_opens_it(live_server, seeded, viewer_user, browser_page):
    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    page.goto(live_server.url + "/events")
    page.fill("#request-id", "req_b")
    page.click("form.search button[type=submit]")
    page.wait_for_load_state("networkidle")
    rows = page.locator("table.events tbody tr")
    assert rows.count() == 1
    assert "req_b" in rows.first.text_content()
    page.screenshot(path=str(SCREENSHOTS / "events-search.png"), full_page=True)
    rows.first.locator("a").first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-field=request_id]").text_content().strip() == "req_b"
    assert page.locator("[data-field=error_type]").text_content().strip() == "overloaded_error"
    page.screenshot(path=str(SCREENSHOTS / "event-detail.png"), full_page=True)
    assert page.errors == []


def test_empty_project_shows_the_first_event_instructions(live_server, viewer_user, project, browser_page):
    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    text = page.locator(".empty-state").text_content()
    assert "curl -X POST" in text
    assert "create_ingest_key --project acme" in text
    page.screenshot(path=str(SCREENSHOTS / "empty.png"), full_page=True)
    assert page.errors == []


def test_a_rules_threshold_line_is_in_the_drawn_chart(live_server, seeded, viewer_user, browser_page):
    from alerts.models import AlertRule
    from projects.models import Project

    AlertRule.objects.create(
        project=Project.objects.get(slug="acme"),
        name="Prod errors",
        metric="error_rate",
        window="hour",
        condition="above",
        threshold=0.1,
        environment="prod",
        recipients=["oncall@example.com"],
    )
    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    page.goto(f"{live_server.url}/errors?project=acme&range=24h&environment=prod")
    page.wait_for_load_state("networkidle")
    assert_charts_drawn(page)
    # What Plotly drew (the graph div's own data), not just the JSON the server sent.
    drawn = page.evaluate("""() => document.getElementById('fig-error-rate-plot').data
        .filter(t => t.meta && t.meta.kind === 'threshold').map(t => ({name: t.name, y: t.y}))""")
    assert drawn == [{"name": "Prod errors (> 10.0%, hourly)", "y": [10, 10]}]
    assert page.locator("#fig-error-rate-plot .legendtext", has_text="Prod errors").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "errors-threshold.png"), full_page=True)
    assert page.errors == []


def test_a_click_on_a_bar_opens_the_calls_of_that_bucket_with_the_pages_filters(
    live_server, seeded, viewer_user, browser_page
):
    from datetime import timedelta
    from urllib.parse import parse_qs, urlsplit

    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    page.goto(f"{live_server.url}/?project=acme&range=24h&environment=prod&model=claude-sonnet-4-6")
    page.wait_for_load_state("networkidle")
    assert_charts_drawn(page)
    page.wait_for_selector("#fig-requests-plot[data-drawn]")
    # Two bars: req_b (3 h ago) and req_a (2 h ago). Click the earlier one, in its middle.
    boxes = page.evaluate("""() => Array.from(document.querySelectorAll('#fig-requests-plot g.point path'))
        .map(p => p.getBoundingClientRect()).filter(r => r.height > 0)
        .map(r => ({x: r.x + r.width / 2, y: r.y + r.height / 2})).sort((a, b) => a.x - b.x)""")
    assert len(boxes) == 2
    page.mouse.move(boxes[0]["x"], boxes[0]["y"])
    page.mouse.click(boxes[0]["x"], boxes[0]["y"])
    page.wait_for_url("**/events?**")
    query = parse_qs(urlsplit(page.url).query)
    bucket = (seeded.now - timedelta(hours=3)).replace(minute=0, second=0)
    assert query == {
        "project": ["acme"],
        "environment": ["prod"],
        "model": ["claude-sonnet-4-6"],
        "from": [bucket.strftime("%Y-%m-%dT%H:%M:%SZ")],
        "to": [(bucket + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")],
    }
    page.screenshot(path=str(SCREENSHOTS / "drill-down-events.png"), full_page=True)
    assert page.errors == []
