"""Security headers on every page, and no inline script anywhere, so the CSP can forbid it."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from django.test import Client

from tests.projects.conftest import World
from tests.projects.test_access import PUBLIC, RULES, call, ruled_routes

ROOT = Path(__file__).resolve().parents[2]
CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
}


def csp_of(response) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    directives = [d.split() for d in response.get("Content-Security-Policy", "").split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


class ScriptFinder(HTMLParser):
    """Every <script> without src= that isn't a JSON blob, every on*= handler, every javascript: URL."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts += 1
            if not attributes.get("src") and attributes.get("type") != "application/json":
                self.problems.append(f"inline <script {attrs}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...> inline event handler")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.problems.append(f"<{tag} {name}={value!r}>")


def inline_script_problems(html: str) -> list[str]:
    finder = ScriptFinder()
    finder.feed(html)
    return finder.problems


def html_pages(world: World) -> dict[str, str]:
    """Every HTML page a logged-in admin of B (and the superuser, for /admin/) can GET, by URL."""
    admin = Client()
    admin.force_login(world.b.admin)
    root = Client()
    root.force_login(world.superuser)
    pages = {}
    for route in ruled_routes():
        rule = RULES.get(route)
        if rule is None or "GET" not in rule.methods:
            continue
        resp = call(admin if rule.anonymous != PUBLIC else Client(), "GET", route, world.b)
        if resp.status_code == 200 and resp["Content-Type"].startswith("text/html"):
            pages[route or "/"] = resp
    # Pages outside the rule table: errors, the login page with errors, and the admin's.
    pages["403"] = _viewer_403(world)
    pages["404"] = admin.get("/projects/nope/keys")
    pages["login (errors)"] = Client().post("/login", {"username": "x", "password": "y"})
    for url in (
        "/admin/",
        "/admin/login/",
        "/admin/projects/project/",
        f"/admin/projects/project/{world.b.project.pk}/change/",
        "/admin/auth/user/add/",
    ):
        pages[url] = root.get(url) if url != "/admin/login/" else Client().get(url)
    return pages


def _viewer_403(world: World):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(world.a.viewer)
    return client.get("/projects/alpha/keys")


def test_every_page_has_the_csp_and_no_inline_script(world: World):
    pages = html_pages(world)
    assert len(pages) >= 30, sorted(pages)
    problems = []
    for name, resp in pages.items():
        if csp_of(resp) != CSP:
            problems.append(f"{name}: CSP {resp.get('Content-Security-Policy')!r}")
        problems += [f"{name}: {p}" for p in inline_script_problems(resp.content.decode())]
    assert not problems, "\n".join(problems)
    # The checker does look: the dashboard's figures are json_script blobs beside charts.js.
    assert pages["/"].content.decode().count('type="application/json"') >= 1


def test_the_inline_script_checker_catches_what_the_csp_would_block():
    assert (
        inline_script_problems('<script src="/static/a.js"></script><script type="application/json">{}</script>') == []
    )
    assert len(inline_script_problems("<script>alert(1)</script>")) == 1
    assert len(inline_script_problems('<script type="module">x()</script>')) == 1
    assert len(inline_script_problems('<button onclick="x()">')) == 1
    assert len(inline_script_problems('<a href="javascript:x()">')) == 1


def test_other_security_headers(client, db):
    resp = client.get("/login")
    assert resp["X-Frame-Options"] == "DENY"
    assert resp["Referrer-Policy"] == "same-origin"
    assert resp["X-Content-Type-Options"] == "nosniff"
    assert "csrftoken" in resp.cookies
    assert resp.cookies["csrftoken"]["samesite"] == "Lax"


def test_hsts_and_secure_cookies_on_https(settings, django_user_model, db):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    django_user_model.objects.create_user("sam", password="pw-sam-123456")
    client = Client()
    resp = client.get("/login", secure=True)
    assert resp["Strict-Transport-Security"] == "max-age=31536000"
    assert resp.cookies["csrftoken"]["secure"]
    resp = client.post("/login", {"username": "sam", "password": "pw-sam-123456"}, secure=True)
    assert resp.status_code == 302
    session = resp.cookies["sessionid"]
    assert session["secure"]
    assert session["httponly"]
    assert session["samesite"] == "Lax"


def _settings_in_a_fresh_process(**env: str) -> dict[str, str]:
    code = (
        "from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.X_FRAME_OPTIONS, s.SECURE_REFERRER_POLICY, s.SESSION_COOKIE_SAMESITE)"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECURE_COOKIES", "TALLY_HSTS_SECONDS")}
    base.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "SECRET_KEY": "x" * 50,
            "DATABASE_URL": "postgres://u:p@127.0.0.1:1/x",
            "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        }
    )
    base.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code], env=base, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return dict(zip(("hsts", "session_secure", "csrf_secure", "frames", "referrer", "samesite"), out, strict=True))


def test_production_settings_turn_on_hsts_and_make_run_does_not():
    production = _settings_in_a_fresh_process()
    assert production == {
        "hsts": "31536000",
        "session_secure": "True",
        "csrf_secure": "True",
        "frames": "DENY",
        "referrer": "same-origin",
        "samesite": "Lax",
    }
    assert _settings_in_a_fresh_process(TALLY_HSTS_SECONDS="3600")["hsts"] == "3600"
    # `make run`: plain http on 127.0.0.1. HSTS there would pin 127.0.0.1 to https for a year.
    make_run = _settings_in_a_fresh_process(SECURE_COOKIES="0")
    assert (make_run["hsts"], make_run["session_secure"]) == ("0", "False")
    assert _settings_in_a_fresh_process(DEBUG="1", SECRET_KEY="")["hsts"] == "0"
