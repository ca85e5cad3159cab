"""Who may open which URL: every URL pattern the project has is walked, and each must have a
rule in RULES below. A new URL without one fails `test_every_url_pattern_has_an_access_rule`.

For each rule:
- anonymous: pages redirect to /login, APIs and ingest answer 401; only the allowlisted
  public URLs answer (and /admin/*, which has Django's own login: tested on its own).
- project isolation: an admin of project A, a member of nothing, and A's keys ask for project
  B's data in every way a URL can name it (B's slug in the path or ?project=, B's event, rule,
  key, override, membership, budget or notification id, B's slug in a JSON body) with every
  method the URL takes. Each answer is a 4xx or carries none of B's marker strings, and B's
  rows are unchanged after all of it.
- roles: a viewer of A is refused the admin-only methods on A's own objects.
- and the URL is not vacuous: B's own admin gets 2xx and sees B's markers where the rule says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.projects.conftest import B_MARKERS, Side, World, project_state

PUBLIC, PAGE, API, INGEST = "public", "page", "api", "ingest"
ALL_WRITES = ("POST", "PATCH", "DELETE")

RULE_JSON = {
    "name": "Injected",
    "metric": "cost_usd",
    "window": "hour",
    "condition": "above",
    "threshold": 1.0,
    "recipients": ["intruder@example.com"],
    "project": "{slug}",
}
BUDGET_JSON = {
    "name": "Injected",
    "period": "month",
    "limit_usd": 1.0,
    "recipients": ["intruder@example.com"],
    "project": "{slug}",
}
RULE_FORM = {
    "name": "Injected",
    "metric": "cost_usd",
    "window": "hour",
    "condition": "above",
    "threshold": "1",
    "recipients": "intruder@example.com",
    "cooldown_minutes": "60",
    "min_requests": "20",
    "enabled": "true",
}
PRICE_FORM = {
    "model": "injected-model",
    "effective_from": "2026-01-01T00:00",
    "input_usd_per_mtok": "1",
    "output_usd_per_mtok": "2",
    "batch_multiplier": "0.5",
}
EVENT = {"request_id": "injected-1", "model": "claude-sonnet-4-6", "latency_ms": 10}


@dataclass(frozen=True)
class Rule:
    anonymous: str  # public: served to anyone; page: redirect to /login; api / ingest: 401
    methods: tuple[str, ...] = ("GET",)
    query: str = ""  # "{slug}" / "{marker}" are filled with the project asked for
    body: dict[str, Any] | None = None  # a body that WOULD change things if access were wrong
    keys: tuple[str, ...] = ()  # key scopes that may call it (their project only)
    viewer_refused: tuple[str, ...] = ()  # methods only the project's admins may use
    shows_marker: bool = True  # B's admin sees one of B's markers on a GET (proves the URL is real)


RULES: dict[str, Rule] = {
    # --- public: operations, login, the API description -------------------------------------------
    "healthz": Rule(PUBLIC),
    "readyz": Rule(PUBLIC),
    "metrics": Rule(PUBLIC),
    "login": Rule(PUBLIC, ("GET", "POST")),
    "logout": Rule(PUBLIC, ("POST",)),
    "api/v1/openapi.json": Rule(PUBLIC),
    # --- ingest: an ingest key fixes the project; the body can't name another ---------------------
    "api/v1/events": Rule(INGEST, ("POST",), body=EVENT, keys=("ingest",), shows_marker=False),
    "v1/traces": Rule(INGEST, ("POST",), body={"resourceSpans": []}, keys=("ingest",), shows_marker=False),
    # --- query and admin APIs ----------------------------------------------------------------------
    "api/v1/metrics": Rule(API, query="?project={slug}&group_by=model,service", keys=("read", "admin")),
    "api/v1/budgets/status": Rule(API, query="?project={slug}", keys=("read", "admin", "ingest")),
    "api/v1/users/forget": Rule(
        API,
        ("POST",),
        body={"user_id": "{marker}-user-7", "project": "{slug}"},
        keys=("admin",),
        viewer_refused=("POST",),
    ),
    "api/v1/alert-rules": Rule(API, ("GET", "POST"), body=RULE_JSON, keys=("admin",), viewer_refused=("GET", "POST")),
    "api/v1/alert-rules/<int:rule_id>": Rule(
        API,
        ("GET", "PATCH", "DELETE"),
        body={"threshold": 1.0},
        keys=("admin",),
        viewer_refused=("GET", "PATCH", "DELETE"),
    ),
    "api/v1/budgets": Rule(API, ("GET", "POST"), body=BUDGET_JSON, keys=("admin",), viewer_refused=("GET", "POST")),
    "api/v1/budgets/<int:budget_id>": Rule(
        API,
        ("GET", "PATCH", "DELETE"),
        body={"limit_usd": 1.0},
        keys=("admin",),
        viewer_refused=("GET", "PATCH", "DELETE"),
    ),
    # --- dashboards ----------------------------------------------------------------------------------
    "": Rule(PAGE, query="?project={slug}&range=7d"),
    "spend": Rule(PAGE, query="?project={slug}"),
    "latency": Rule(PAGE, query="?project={slug}"),
    "errors": Rule(PAGE, query="?project={slug}"),
    "cache": Rule(PAGE, query="?project={slug}"),
    "events": Rule(PAGE, query="?project={slug}&request_id={marker}-req-0"),
    "events/<int:event_id>": Rule(PAGE, query="?project={slug}"),
    # --- project admin pages -----------------------------------------------------------------------
    "projects/<slug:slug>/keys": Rule(
        PAGE, ("GET", "POST"), body={"environment": "prod", "scope": "admin"}, viewer_refused=("GET", "POST")
    ),
    "projects/<slug:slug>/keys/<int:key_id>/revoke": Rule(PAGE, ("POST",), viewer_refused=("POST",)),
    "projects/<slug:slug>/prices": Rule(PAGE, ("GET", "POST"), body=PRICE_FORM, viewer_refused=("GET", "POST")),
    "projects/<slug:slug>/prices/<int:override_id>/delete": Rule(PAGE, ("POST",), viewer_refused=("POST",)),
    "projects/<slug:slug>/retention": Rule(
        PAGE, ("GET", "POST"), body={"raw_retention_days": "2"}, viewer_refused=("GET", "POST")
    ),
    "projects/<slug:slug>/members": Rule(
        PAGE, ("GET", "POST"), body={"username": "nobody", "role": "admin"}, viewer_refused=("GET", "POST")
    ),
    "projects/<slug:slug>/members/<int:membership_id>": Rule(
        PAGE, ("POST",), body={"role": "admin"}, viewer_refused=("POST",)
    ),
    "projects/<slug:slug>/members/<int:membership_id>/remove": Rule(PAGE, ("POST",), viewer_refused=("POST",)),
    # --- provider connection and reconciliation (providers/) -------------------------------------------
    "api/v1/provider-connection": Rule(
        API,
        ("GET", "PUT", "DELETE"),
        query="?project={slug}",
        body={"admin_key": "sk-ant-admin01-injected", "workspace_ids": ["injected"], "project": "{slug}"},
        keys=("admin",),
        viewer_refused=("GET", "PUT", "DELETE"),
    ),
    "api/v1/reconciliation": Rule(API, query="?project={slug}", keys=("read", "admin")),
    "projects/<slug:slug>/provider": Rule(
        PAGE, ("GET", "POST"), body={"admin_key": "sk-ant-admin01-injected"}, viewer_refused=("GET", "POST")
    ),
    "projects/<slug:slug>/provider/delete": Rule(PAGE, ("POST",), viewer_refused=("POST",)),
    "projects/<slug:slug>/provider/sync": Rule(PAGE, ("POST",), viewer_refused=("POST",)),
    "reconciliation": Rule(PAGE, query="?project={slug}"),
    # --- alerts pages ----------------------------------------------------------------------------------
    "alerts/": Rule(PAGE, query="?project={slug}"),
    "alerts/new": Rule(
        PAGE,
        ("GET", "POST"),
        query="?project={slug}",
        body=RULE_FORM,
        viewer_refused=("GET", "POST"),
        shows_marker=False,
    ),
    "alerts/<int:rule_id>/": Rule(PAGE),
    "alerts/<int:rule_id>/edit": Rule(PAGE, ("GET", "POST"), body=RULE_FORM, viewer_refused=("GET", "POST")),
    "alerts/<int:rule_id>/enabled": Rule(PAGE, ("POST",), body={"enabled": "false"}, viewer_refused=("POST",)),
    "alerts/<int:rule_id>/test": Rule(PAGE, ("POST",), viewer_refused=("POST",)),
    "alerts/<int:rule_id>/delete": Rule(PAGE, ("GET", "POST"), viewer_refused=("GET", "POST")),
    "alerts/budgets/": Rule(
        PAGE,
        ("GET", "POST"),
        query="?project={slug}",
        body={
            "name": "Injected",
            "period": "month",
            "limit_usd": "1",
            "recipients": "intruder@example.com",
            "enabled": "on",
        },
        viewer_refused=("POST",),
    ),
    "alerts/budgets/<int:budget_id>/delete": Rule(PAGE, ("GET", "POST"), viewer_refused=("GET", "POST")),
    "alerts/digest/": Rule(
        PAGE,
        ("GET", "POST"),
        query="?project={slug}",
        body={"enabled": "on", "recipients": "intruder@example.com"},
        viewer_refused=("POST",),
    ),
    "alerts/digest/test": Rule(PAGE, ("POST",), query="?project={slug}", viewer_refused=("POST",)),
    "alerts/outbox/": Rule(PAGE, query="?project={slug}"),
    "alerts/outbox/<int:notification_id>/": Rule(PAGE),
}
# Django's admin has its own login and is for superusers only (test_admin_is_for_superusers_only).
ALLOWLISTED_PREFIXES = ("admin/",)

_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def url_patterns() -> list[str]:
    """Every route of the URLconf, includes flattened: 'projects/<slug:slug>/keys', ..."""

    def walk(patterns: list[Any], prefix: str) -> list[str]:
        out = []
        for p in patterns:
            if isinstance(p, URLResolver):
                out += walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                out.append(prefix + str(p.pattern))
        return out

    return walk(get_resolver().url_patterns, "")


def ruled_routes() -> list[str]:
    return [r for r in url_patterns() if not r.startswith(ALLOWLISTED_PREFIXES)]


def _fill(value: Any, side: Side) -> Any:
    if isinstance(value, str):
        return value.replace("{slug}", side.project.slug).replace("{marker}", side.project.slug)
    if isinstance(value, dict):
        return {k: _fill(v, side) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, side) for v in value]
    return value


def url_for(route: str, side: Side, ids: Side | None = None) -> str:
    """The route for project `side`, with object ids from `ids` (default: the same project)."""

    def arg(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "slug":
            return side.project.slug
        if not hasattr(side, name):
            pytest.fail(
                f"URL pattern {route!r} has a parameter {name!r} the access test can't fill: "
                f"add a {name} of each project to tests/projects/conftest.py:Side"
            )
        return str(getattr(ids or side, name))

    return "/" + _PARAM.sub(arg, route) + _fill(RULES[route].query, side)


def names_a_project_and_an_object(route: str) -> bool:
    params = _PARAM.findall(route)
    return bool(params) and ("slug" in params or "{slug}" in RULES[route].query) and params != ["slug"]


def call(
    client: Client,
    method: str,
    route: str,
    side: Side,
    *,
    key: str | None = None,  # type: ignore[no-untyped-def]
    ids: Side | None = None,
):
    rule = RULES[route]
    url = url_for(route, side, ids)
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    body = _fill(rule.body or {}, side) if method != "GET" else None
    if method == "GET":
        return client.get(url, **extra)
    if rule.anonymous in (API, INGEST):
        data = json.dumps(body) if method != "DELETE" else ""
        return client.generic(method, url, data, content_type="application/json", **extra)
    return client.post(url, body, **extra)


def shows_b(response) -> list[str]:  # type: ignore[no-untyped-def]
    text = response.content.decode(errors="replace")
    return [m for m in B_MARKERS if m in text]


def test_every_url_pattern_has_an_access_rule():
    routes = ruled_routes()
    missing = [r for r in routes if r not in RULES]
    assert not missing, "\n".join(
        f"URL pattern {r!r} has no access rule: add one to RULES in {__file__}" for r in missing
    )
    stale = [r for r in RULES if r not in routes]
    assert not stale, f"RULES name URL patterns that no longer exist: {stale}"


def test_anonymous_visitors_are_refused_everywhere_but_the_allowlist(world: World):
    anonymous = Client()
    for route in ruled_routes():
        rule = RULES.get(route)
        if rule is None:
            continue  # reported by test_every_url_pattern_has_an_access_rule
        for method in rule.methods:
            resp = call(anonymous, method, route, world.a)
            where = f"anonymous {method} {route}: {resp.status_code}"
            if rule.anonymous == PUBLIC:
                assert resp.status_code < 400, where
                assert not resp.get("Location", "").startswith("/login?next="), where
            elif rule.anonymous == PAGE:
                assert resp.status_code == 302, where
                assert resp["Location"].startswith("/login?next="), where
            else:
                assert resp.status_code == 401, where


def test_ingest_urls_need_a_live_ingest_key(world: World):
    for route in ("api/v1/events", "v1/traces"):
        for key in (None, "tly_not-a-key", world.a.keys["read"]):
            assert call(Client(), "POST", route, world.a, key=key).status_code == 401, (route, key)
        assert call(Client(), "POST", route, world.a, key=world.a.keys["ingest"]).status_code < 300, route


def _actors(world: World, rule: Rule) -> list[tuple[str, Client, str | None]]:
    """Everyone who must not reach project B: A's admin and a user of nothing, logged in; A's keys."""
    out = []
    if rule.anonymous != INGEST:
        for user in (world.a.admin, world.nobody):
            client = Client()
            client.force_login(user)
            out.append((f"user {user.username}", client, None))
    out += [(f"A's {scope} key", Client(), world.a.keys[scope]) for scope in rule.keys]
    return out


def test_nobody_outside_project_b_reads_or_changes_it(world: World):
    before = project_state(world.b.project)
    leaks = []
    for route in ruled_routes():
        rule = RULES.get(route)
        if rule is None or rule.anonymous == PUBLIC:
            continue
        # B's project with B's objects; and A's project (which A's admin manages) with B's objects.
        asks = [(world.b, world.b)] + ([(world.a, world.b)] if names_a_project_and_an_object(route) else [])
        for who, client, key in _actors(world, rule):
            for method in rule.methods:
                for side, ids in asks:
                    resp = call(client, method, route, side, key=key, ids=ids)
                    seen = shows_b(resp) if resp.status_code < 400 else []
                    if seen:
                        leaks.append(f"{who} {method} {url_for(route, side, ids)} -> {resp.status_code} shows {seen}")
    assert not leaks, "\n".join(leaks)
    assert project_state(world.b.project) == before


def test_project_b_admin_reaches_every_url_so_the_checks_above_are_real(world: World):
    client = Client()
    client.force_login(world.b.admin)
    for route in ruled_routes():
        rule = RULES.get(route)
        if rule is None or rule.anonymous == PUBLIC or "GET" not in rule.methods:
            continue
        resp = call(client, "GET", route, world.b)
        assert resp.status_code == 200, f"B's admin GET {url_for(route, world.b)}: {resp.status_code}"
        if rule.shows_marker:
            assert shows_b(resp), f"B's admin GET {url_for(route, world.b)} shows none of B's markers"


def test_a_viewer_is_refused_the_admin_only_methods(world: World):
    client = Client()
    client.force_login(world.a.viewer)
    before = project_state(world.a.project)
    for route in ruled_routes():
        rule = RULES.get(route)
        for method in rule.viewer_refused if rule else ():
            resp = call(client, method, route, world.a)
            assert resp.status_code in (401, 403, 404), f"viewer {method} {route}: {resp.status_code}"
    assert project_state(world.a.project) == before


def test_admin_is_for_superusers_only(world: World):
    assert Client().get("/admin/").url.startswith("/admin/login/")
    for user in (world.a.admin, world.nobody):
        client = Client()
        client.force_login(user)
        assert client.get("/admin/").status_code == 302, user
        assert client.get("/admin/projects/project/").status_code == 302, user
        resp = Client().post("/admin/login/", {"username": user.username, "password": "projects-test-pass-42"})
        assert "for superusers" in resp.content.decode()
    root = Client()
    root.force_login(world.superuser)
    assert root.get("/admin/").status_code == 200
    assert root.get("/admin/projects/project/").status_code == 200
