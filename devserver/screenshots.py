"""`make screenshots`: the README's pictures, taken from a running `make run` with its demo data.

Logs in as the demo admin (password from $TALLY_DATA_DIR), opens the overview over the day
around the demo's latest spend incident (threshold line and shaded incident on the charts) and
the events explorer (that incident's most expensive calls), and writes docs/screenshots/*.png.
Needs Debian's chromium (driven by Playwright with its executable path, never a download).
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

from devserver.embedded import data_dir, dev_environ

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _pages() -> dict[str, str]:
    """The URLs to shoot: around the latest incident of the demo's spend rule."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    dev_environ()
    import django

    django.setup()
    from alerts.selectors import incident_latest

    incident = incident_latest(project_slug="demo", metric="cost_usd", window="hour")
    if incident is None:
        raise SystemExit("no spend incident in project demo: start `make run` on a fresh data dir first")
    rule = incident.rule
    start, end = incident.window_start - timedelta(hours=18), incident.window_start + timedelta(hours=6)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    scope = {
        k: v for k, v in (("environment", rule.environment), ("service", rule.service), ("model", rule.model)) if v
    }
    window = {"project": "demo", "from": start.strftime(stamp), "to": end.strftime(stamp), **scope}
    calls = {
        "project": "demo",
        "from": incident.window_start.strftime(stamp),
        "to": (incident.window_start + timedelta(hours=1)).strftime(stamp),
        **scope,
        "sort": "cost",
    }
    return {"overview": f"/?{urlencode(window)}", "explorer": f"/events?{urlencode(calls)}"}


def main() -> int:
    port = os.environ.get("TALLY_PORT", "8000")
    base = f"http://127.0.0.1:{port}"
    chromium = shutil.which("chromium")
    if chromium is None:
        print("screenshots need Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 1
    password = (data_dir() / "demo-admin-password").read_text().strip()
    pages = _pages()
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/login?next=/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", password)
        page.click("form button[type=submit]")
        page.wait_for_url(f"{base}/")
        for name, path in pages.items():
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            target = OUT / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            print(f"{target.relative_to(OUT.parent.parent)}  <- {path}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
