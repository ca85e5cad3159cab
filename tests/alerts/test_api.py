"""/api/v1/alert-rules (CONTRACT §5): admin only, every bad field named, nothing saved."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from alerts.models import AlertRule
from projects.services import ingest_key_create

VALID = {
    "name": "Prod spend per hour",
    "metric": "cost_usd",
    "window": "hour",
    "condition": "above",
    "threshold": 25.0,
    "environment": "prod",
    "service": None,
    "model": None,
    "recipients": ["oncall@example.com"],
    "cooldown_minutes": 60,
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
    resp = call("post", "/api/v1/alert-rules", admin_key, VALID)
    assert resp.status_code == 201, resp.content
    rule = resp.json()
    assert {k: rule[k] for k in VALID} == VALID
    assert rule["project"] == "acme"
    listed = call("get", "/api/v1/alert-rules", admin_key).json()["rules"]
    assert [r["id"] for r in listed] == [rule["id"]]
    patched = call("patch", f"/api/v1/alert-rules/{rule['id']}", admin_key, {"threshold": 40, "enabled": False})
    assert patched.status_code == 200
    assert (patched.json()["threshold"], patched.json()["enabled"], patched.json()["name"]) == (
        40.0,
        False,
        VALID["name"],
    )
    assert call("get", f"/api/v1/alert-rules/{rule['id']}", admin_key).json()["threshold"] == 40.0
    assert call("delete", f"/api/v1/alert-rules/{rule['id']}", admin_key).status_code == 204
    assert AlertRule.objects.count() == 0


def test_anomaly_rule_takes_sensitivity(admin_key):
    body = {**VALID, "condition": "anomaly", "threshold": None, "sensitivity": 4}
    resp = call("post", "/api/v1/alert-rules", admin_key, body)
    assert resp.status_code == 201
    assert resp.json()["sensitivity"] == 4.0


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"metric": "p50"}, {"metric"}),
        ({"window": "week"}, {"window"}),
        ({"condition": "sideways"}, {"condition"}),
        ({"threshold": None}, {"threshold"}),
        ({"threshold": "high"}, {"threshold"}),
        ({"threshold": -1}, {"threshold"}),
        ({"metric": "error_rate", "threshold": 5}, {"threshold"}),
        ({"condition": "anomaly"}, {"threshold"}),
        ({"condition": "anomaly", "threshold": None, "sensitivity": 100}, {"sensitivity"}),
        ({"sensitivity": 3}, {"sensitivity"}),
        ({"recipients": []}, {"recipients"}),
        ({"recipients": ["not-an-email"]}, {"recipients"}),
        ({"recipients": "oncall@example.com"}, {"recipients"}),
        ({"cooldown_minutes": -5}, {"cooldown_minutes"}),
        ({"cooldown_minutes": 1.5}, {"cooldown_minutes"}),
        ({"enabled": "yes"}, {"enabled"}),
        ({"name": ""}, {"name"}),
        ({"colour": "red"}, {"colour"}),
        ({"metric": "p50", "window": "week", "recipients": [], "name": ""}, {"metric", "window", "recipients", "name"}),
    ],
)
def test_invalid_rules_name_every_bad_field_and_save_nothing(admin_key, changes, fields):
    body = {**VALID, **changes}
    resp = call("post", "/api/v1/alert-rules", admin_key, body)
    assert resp.status_code == 400
    assert {e["field"] for e in resp.json()["errors"]} == fields
    assert AlertRule.objects.count() == 0


def test_invalid_patch_changes_nothing(admin_key):
    rule_id = call("post", "/api/v1/alert-rules", admin_key, VALID).json()["id"]
    resp = call("patch", f"/api/v1/alert-rules/{rule_id}", admin_key, {"threshold": -3, "window": "year"})
    assert resp.status_code == 400
    assert {e["field"] for e in resp.json()["errors"]} == {"threshold", "window"}
    rule = AlertRule.objects.get()
    assert (rule.threshold, rule.window) == (25.0, "hour")


def test_only_admins_manage_rules(admin_key, db):
    read = ingest_key_create(project_slug="acme", environment_name="prod", scope="read").secret
    ingest = ingest_key_create(project_slug="acme", environment_name="prod").secret
    for secret in (None, read, ingest, "tly_bogus"):
        assert call("post", "/api/v1/alert-rules", secret, VALID).status_code == 401
        assert call("get", "/api/v1/alert-rules", secret).status_code == 401
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-1")
    client = Client()
    client.force_login(viewer)
    assert (
        client.post("/api/v1/alert-rules", data=json.dumps(VALID), content_type="application/json").status_code == 401
    )
    from projects.models import Membership, Project

    Membership.objects.create(user=viewer, project=Project.objects.get(slug="acme"), role="viewer")
    assert (
        client.post("/api/v1/alert-rules", data=json.dumps(VALID), content_type="application/json").status_code == 401
    )
    boss = get_user_model().objects.create_user("boss", password="pw-boss-1")
    Membership.objects.create(user=boss, project=Project.objects.get(slug="acme"), role="admin")
    client.force_login(boss)
    resp = client.post("/api/v1/alert-rules", data=json.dumps(VALID), content_type="application/json")
    assert resp.status_code == 201
    assert AlertRule.objects.count() == 1


def test_an_admin_key_cannot_touch_another_projects_rules(admin_key):
    other = ingest_key_create(project_slug="globex", environment_name="prod", scope="admin").secret
    rule_id = call("post", "/api/v1/alert-rules", admin_key, VALID).json()["id"]
    assert call("get", f"/api/v1/alert-rules/{rule_id}", other).status_code == 404
    assert call("patch", f"/api/v1/alert-rules/{rule_id}", other, {"threshold": 1}).status_code == 404
    assert call("delete", f"/api/v1/alert-rules/{rule_id}", other).status_code == 404
    assert call("get", "/api/v1/alert-rules", other).json() == {"rules": []}
