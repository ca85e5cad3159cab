"""The loop an on-call engineer follows: an alert email arrives (real SMTP on loopback), its
dashboard link is opened in Chromium, and the page shows the incident's window with the rule's
threshold drawn and the incident shaded. Screenshot: test-artifacts/screenshots/email-link-spend.png."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from alerts.models import AlertRule
from alerts.services import rules_evaluate
from projects.services import ingest_key_create
from rollups.services import rollup_until_current
from tests.alerts.test_email_end_to_end import _body, _spend_events, smtp  # noqa: F401 - smtp is a fixture
from tests.dashboard.conftest import SCREENSHOTS, viewer_user  # noqa: F401 - a fixture
from tests.dashboard.test_browser import assert_charts_drawn, log_in
from tests.rollups.helpers import ingest

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("clean_events")]


def test_the_alert_emails_link_opens_that_window_with_the_threshold(
    live_server,
    smtp,  # noqa: F811 - the imported fixture
    settings,
    viewer_user,  # noqa: F811 - the imported fixture
    browser_page,
):
    inbox, _ = smtp
    settings.TALLY_BASE_URL = live_server.url
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    now = datetime.now(tz=UTC).replace(minute=5, second=0, microsecond=0)
    closed = now.replace(minute=0) - timedelta(hours=1)
    # $3.00 of Sonnet from checkout in the hour that just closed (10 calls x 100k input tokens).
    ingest(key, _spend_events(closed, "c", 10, "claude-sonnet-4-6", "checkout", 100_000))
    rollup_until_current()
    AlertRule.objects.create(
        project=key.project,
        name="Prod spend per hour",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=0.5,
        environment="prod",
        recipients=["oncall@example.com"],
        cooldown_minutes=60,
    )
    assert rules_evaluate(now=now) == {"opened": 1}
    assert len(inbox.messages) == 1
    text = _body(inbox.messages[0], "plain")
    link = re.search(r"Dashboard for this window: (\S+)", text).group(1)
    window = {"from": [f"{closed:%Y-%m-%dT%H}:00:00Z"], "to": [f"{closed + timedelta(hours=1):%Y-%m-%dT%H}:00:00Z"]}
    assert urlsplit(link).path == "/spend"
    assert parse_qs(urlsplit(link).query) == {"project": ["acme"], "environment": ["prod"], **window}

    page = browser_page
    log_in(page, live_server.url, viewer_user.username)
    page.goto(link)
    page.wait_for_load_state("networkidle")
    assert_charts_drawn(page)
    # That window: one hour, shown in the range inputs (datetime-local, UTC) and as the one bucket.
    assert page.locator("input[name=from]").input_value() == f"{closed:%Y-%m-%dT%H}:00"
    assert page.locator("input[name=to]").input_value() == f"{closed + timedelta(hours=1):%Y-%m-%dT%H}:00"
    # That threshold, in what Plotly drew on the spend charts.
    drawn = page.evaluate("""() => Array.from(document.querySelectorAll('[id$="-plot"]'))
        .flatMap(div => (div.data || []).filter(t => t.meta && t.meta.kind === 'threshold')
        .map(t => ({chart: div.id, name: t.name, y: t.y})))""")
    assert {"chart": "fig-spend-model-plot", "name": "Prod spend per hour (> $0.50 per hour)", "y": [0.5, 0.5]} in drawn
    # And the incident behind the email, listed with the window it breached.
    assert page.locator("text=Prod spend per hour").count() >= 1
    page.screenshot(path=str(SCREENSHOTS / "email-link-spend.png"), full_page=True)
    assert page.errors == []
