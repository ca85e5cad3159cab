"""Alerts fixtures. The headless-browser fixtures are the dashboard's, imported (not copied) so
both suites launch Chromium the same way; pytest registers fixtures a conftest imports."""

from __future__ import annotations

import pytest

from tests.dashboard.conftest import browser_page, chromium_path

__all__ = ["browser", "browser_page", "chromium_path"]


@pytest.fixture
def browser(browser_page):  # type: ignore[no-untyped-def]
    """The dashboard's browser_page (which also closes the connections the test body opened)."""
    return browser_page
