"""/api/v1/budgets (CONTRACT §5): admin only, every bad field named, nothing saved."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from alerts.models import Budget
from projects.models import Membership, Project
from projects.services import ingest_key_create

VALID = {
    "name": "Monthly LLM budget",
    "period": "month",
    "limit_usd": 500.0,
    "environment": "prod",
    "service": None,
    "user_id": None,
    "recipients": ["finance@example.com"],
    "enabled": True,
}


@pytest.fixture
def admin_key(db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod", scope="admin").secret


def call(method: str, path: str, secret: str | None, body=None):  # type: ignore[no-untyped-def]
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    data = json.dumps(body) if body is not None else None
    return getattr(client, method)(path, data=data, content_type="application/json", **headers)


def test_create_read_update_delete(admin_key):
    resp = call("post", "/api/v1/budgets", admin_key, VALID)
    assert resp.status_code == 201, resp.content
    budget = resp.json()
    assert {k: budget[k] for k in VALID} == VALID
    assert budget["project"] == "acme"
    stored = Budget.objects.get()
    assert (stored.limit_usd, stored.environment, stored.service) == (Decimal("500.00"), "prod", "")
    listed = call("get", "/api/v1/budgets", admin_key).json()["budgets"]
    assert [b["id"] for b in listed] == [budget["id"]]
    patched = call("patch", f"/api/v1/budgets/{budget['id']}", admin_key, {"limit_usd": 750.5, "enabled": False})
    assert patched.status_code == 200, patched.content
    assert (patched.json()["limit_usd"], patched.json()["enabled"], patched.json()["name"]) == (
        750.5,
        False,
        VALID["name"],
    )
    assert call("get", f"/api/v1/budgets/{budget['id']}", admin_key).json()["limit_usd"] == 750.5
    # Clearing a scope: null (stored as "", shown as null again).
    cleared = call("patch", f"/api/v1/budgets/{budget['id']}", admin_key, {"environment": None})
    assert cleared.json()["environment"] is None
    assert Budget.objects.get().environment == ""
    assert call("delete", f"/api/v1/budgets/{budget['id']}", admin_key).status_code == 204
    assert Budget.objects.count() == 0


def test_enabled_defaults_to_true(admin_key):
    body = {k: v for k, v in VALID.items() if k != "enabled"}
    resp = call("post", "/api/v1/budgets", admin_key, body)
    assert resp.status_code == 201
    assert resp.json()["enabled"] is True


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"name": ""}, {"name"}),
        ({"period": "week"}, {"period"}),
        ({"limit_usd": 0}, {"limit_usd"}),
        ({"limit_usd": -5}, {"limit_usd"}),
        ({"limit_usd": "lots"}, {"limit_usd"}),
        ({"limit_usd": 1.005}, {"limit_usd"}),  # cents at most
        ({"limit_usd": 1e15}, {"limit_usd"}),  # more digits than the column holds
        ({"limit_usd": None}, {"limit_usd"}),
        ({"recipients": []}, {"recipients"}),
        ({"recipients": ["not-an-email"]}, {"recipients"}),
        ({"recipients": "finance@example.com"}, {"recipients"}),
        ({"enabled": "yes"}, {"enabled"}),
        ({"service": 5}, {"service"}),
        ({"colour": "red"}, {"colour"}),
        (
            {"name": "", "period": "year", "limit_usd": 0, "recipients": []},
            {"name", "period", "limit_usd", "recipients"},
        ),
    ],
)
def test_invalid_budgets_name_every_bad_field_and_save_nothing(admin_key, changes, fields):
    resp = call("post", "/api/v1/budgets", admin_key, {**VALID, **changes})
    assert resp.status_code == 400
    assert {e["field"] for e in resp.json()["errors"]} == fields
    assert Budget.objects.count() == 0


def test_invalid_patch_changes_nothing(admin_key):
    budget_id = call("post", "/api/v1/budgets", admin_key, VALID).json()["id"]
    resp = call("patch", f"/api/v1/budgets/{budget_id}", admin_key, {"limit_usd": -3, "period": "year"})
    assert resp.status_code == 400
    assert {e["field"] for e in resp.json()["errors"]} == {"limit_usd", "period"}
    moved = call("patch", f"/api/v1/budgets/{budget_id}", admin_key, {"project": "globex"})
    assert (moved.status_code, moved.json()["errors"][0]["field"]) == (400, "project")
    budget = Budget.objects.get()
    assert (budget.limit_usd, budget.period) == (Decimal("500.00"), "month")


def test_bad_bodies_are_4xx(admin_key):
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {admin_key}"}
    assert client.post("/api/v1/budgets", data="{", content_type="application/json", **auth).status_code == 400
    assert client.post("/api/v1/budgets", data="[]", content_type="application/json", **auth).status_code == 400
    assert client.post("/api/v1/budgets", data="x", content_type="text/plain", **auth).status_code == 415
    assert Budget.objects.count() == 0


def test_only_admins_manage_budgets(admin_key, db):
    read = ingest_key_create(project_slug="acme", environment_name="prod", scope="read").secret
    ingest = ingest_key_create(project_slug="acme", environment_name="prod").secret
    for secret in (None, read, ingest, "tly_bogus"):
        assert call("post", "/api/v1/budgets", secret, VALID).status_code == 401
        assert call("get", "/api/v1/budgets", secret).status_code == 401
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-1")
    Membership.objects.create(user=viewer, project=Project.objects.get(slug="acme"), role="viewer")
    client = Client()
    client.force_login(viewer)
    assert client.post("/api/v1/budgets", data=json.dumps(VALID), content_type="application/json").status_code == 401
    boss = get_user_model().objects.create_user("boss", password="pw-boss-1")
    Membership.objects.create(user=boss, project=Project.objects.get(slug="acme"), role="admin")
    client.force_login(boss)
    resp = client.post("/api/v1/budgets", data=json.dumps(VALID), content_type="application/json")
    assert resp.status_code == 201
    assert Budget.objects.count() == 1


def test_an_admin_key_cannot_touch_another_projects_budgets(admin_key):
    other = ingest_key_create(project_slug="globex", environment_name="prod", scope="admin").secret
    budget_id = call("post", "/api/v1/budgets", admin_key, VALID).json()["id"]
    assert call("get", f"/api/v1/budgets/{budget_id}", other).status_code == 404
    assert call("patch", f"/api/v1/budgets/{budget_id}", other, {"limit_usd": 1}).status_code == 404
    assert call("delete", f"/api/v1/budgets/{budget_id}", other).status_code == 404
    assert call("get", "/api/v1/budgets", other).json() == {"budgets": []}
    assert Budget.objects.get().limit_usd == Decimal("500.00")
