"""Alerts fixtures. The headless-browser fixtures are the dashboard's, imported (not copied) so
both suites launch Chromium the same way; pytest registers fixtures a conftest imports."""

from __future__ import annotations

import pytest
from django.db import connections

from tests.dashboard.conftest import browser_page, chromium_path

__all__ = ["browser", "browser_page", "chromium_path"]


@pytest.fixture
def browser(browser_page):  # type: ignore[no-untyped-def]
    """browser_page for tests that also use the ORM while the browser runs.

    Playwright's sync API runs on greenlets and Django's connections are context-local, so the
    connection such a test body opens is not the one pytest-django closes at the end of the
    session; left open, it keeps the test database from being dropped. Close it here.
    """
    yield browser_page
    connections.close_all()
