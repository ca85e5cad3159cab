"""The explorer in Chromium: ask a question with the filter bar, export it, and check the export
against the metrics API. A screenshot goes to test-artifacts/screenshots/explorer.png."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest

from tests.dashboard.conftest import SCREENSHOTS
from tests.dashboard.test_browser import log_in
from tests.dashboard.test_explorer import calls  # noqa: F401  (the fixture: eight known calls)

pytestmark = pytest.mark.browser


def table_ids(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.strip() for t in page.locator("table.events tbody tr td:nth-child(2)").all_text_contents()]


def test_csv_export_has_as_many_rows_as_the_metrics_api_counts(
    live_server,
    calls,  # noqa: F811 - the imported fixture
    viewer_user,  # noqa: F811
    browser_page,
):
    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    page.goto(f"{live_server.url}/events?project=acme")
    page.fill("input[name=feature]", "refund")
    page.select_option("select[name=sort]", "cost")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "feature=refund" in page.url
    assert "sort=cost" in page.url
    assert page.locator("h2", has_text="Calls, most expensive first").count() == 1
    assert table_ids(page) == ["e8", "e1", "e2", "e6"]

    with page.expect_download() as info:
        page.click("[data-export-csv]")
    download = info.value
    assert download.suggested_filename.startswith("tally-calls-acme-")
    rows = list(csv.reader(io.StringIO(open(download.path(), encoding="utf-8").read())))  # noqa: PTH123, SIM115
    assert rows[0][:2] == ["timestamp", "request_id"]
    assert [r[1] for r in rows[1:]] == ["e8", "e1", "e2", "e6"]

    # The same filters and range, asked of the aggregates.
    # The filter bar's datetime-local inputs are UTC (labelled so): the API takes them with their offset.
    first = page.locator("input[name=from]").input_value() + ":00Z"
    last = page.locator("input[name=to]").input_value() + ":00Z"
    api = page.request.get(f"{live_server.url}/api/v1/metrics?project=acme&feature=refund&from={first}&to={last}")
    assert api.ok, api.text()
    assert len(rows) - 1 == api.json()["totals"]["requests"] == 4
    page.screenshot(path=str(SCREENSHOTS / "explorer.png"), full_page=True)
    assert page.errors == [], page.errors


def test_the_most_expensive_calls_of_a_feature_yesterday_is_two_clicks(
    live_server,
    calls,  # noqa: F811 - the imported fixture
    viewer_user,  # noqa: F811
    browser_page,
):
    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    page.goto(f"{live_server.url}/events?project=acme")
    page.fill("input[name=feature]", "refund")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.get_by_role("link", name="Most expensive calls yesterday").click()
    page.wait_for_load_state("networkidle")
    yesterday = (calls.now - timedelta(days=1)).date()
    assert f"from={yesterday}" in page.url
    assert f"to={yesterday}" in page.url
    by_cost = ["e8", "e1", "e2", "e6"]  # feature refund, most expensive first
    stamp = {e["request_id"]: datetime.fromisoformat(e["timestamp"]).date() for e in calls.events}
    expected = [rid for rid in by_cost if stamp[rid] == yesterday]
    if expected:
        assert table_ids(page) == expected
    else:
        assert page.get_by_text("No calls match these filters in this range.").count() >= 1
    assert page.locator("input[name=feature]").input_value() == "refund"
    assert page.locator("select[name=sort]").input_value() == "cost"
    page.screenshot(path=str(SCREENSHOTS / "explorer-yesterday.png"), full_page=True)
    assert page.errors == [], page.errors
