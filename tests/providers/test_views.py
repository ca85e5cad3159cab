"""PUT/GET/DELETE /api/v1/provider-connection and Settings → Provider: admins only, the key goes in
and never comes out (API, page, HTML source), sync errors are shown."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client

from providers.models import ProviderConnection
from providers.services import provider_connection_set, provider_usage_sync
from tests.providers.conftest import ADMIN_KEY, PROVIDER_DAY, today


@pytest.fixture
def keys(db):  # type: ignore[no-untyped-def]
    from projects.services import ingest_key_create

    return {
        scope: ingest_key_create(project_slug="acme", environment_name="prod", scope=scope).secret
        for scope in ("admin", "read", "ingest")
    }


def call(client: Client, method: str, secret: str | None, body=None, path="/api/v1/provider-connection"):  # type: ignore[no-untyped-def]
    extra = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    data = json.dumps(body) if body is not None else ""
    return getattr(client, method)(path, data=data, content_type="application/json", **extra)


def test_put_get_delete_with_an_admin_key(client, keys):
    assert call(client, "get", keys["admin"]).status_code == 404
    response = call(
        client,
        "put",
        keys["admin"],
        {"provider": "anthropic", "admin_key": ADMIN_KEY, "api_key_ids": ["apikey_01A"], "workspace_ids": []},
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "project": "acme",
        "provider": "anthropic",
        "admin_key_last4": "XYZ9",
        "api_key_ids": ["apikey_01A"],
        "workspace_ids": [],
        "last_synced_at": None,
        "last_error": None,
        "last_error_at": None,
        "covered_from": None,
        "covered_to": None,
    }
    assert ADMIN_KEY not in response.content.decode()
    got = call(client, "get", keys["admin"])
    assert got.status_code == 200
    assert ADMIN_KEY not in got.content.decode()
    assert got.json()["admin_key_last4"] == "XYZ9"
    # An update without a key keeps the stored one and changes the scope.
    updated = call(client, "put", keys["admin"], {"workspace_ids": ["wrkspc_9"]})
    assert updated.status_code == 200
    assert (updated.json()["admin_key_last4"], updated.json()["workspace_ids"]) == ("XYZ9", ["wrkspc_9"])
    assert ProviderConnection.objects.get().admin_key_encrypted  # still there
    assert call(client, "delete", keys["admin"]).status_code == 204
    assert not ProviderConnection.objects.exists()
    assert call(client, "delete", keys["admin"]).status_code == 404


@pytest.mark.parametrize("scope", ["read", "ingest", None])
def test_only_admins_may_touch_the_connection(client, keys, scope):
    secret = keys[scope] if scope else None
    for method in ("get", "put", "delete"):
        response = call(client, method, secret, {"admin_key": ADMIN_KEY} if method == "put" else None)
        assert response.status_code == 401, (method, response.content)
    assert not ProviderConnection.objects.exists()


def test_a_viewer_session_is_refused_and_an_admin_session_allowed(client, keys, django_user_model):
    from projects.models import Membership, Project

    user = django_user_model.objects.create_user("v", "v@example.com", "pw-v-123456789")
    membership = Membership.objects.create(
        user=user, project=Project.objects.get(slug="acme"), role=Membership.Role.VIEWER
    )
    client.force_login(user)
    assert call(client, "put", None, {"admin_key": ADMIN_KEY}).status_code == 401
    membership.role = Membership.Role.ADMIN
    membership.save()
    response = call(client, "put", None, {"admin_key": ADMIN_KEY, "project": "acme"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"admin_key": ADMIN_KEY, "colour": "red"}, "colour"),
        ({"admin_key": ADMIN_KEY, "prompt": "hello"}, "prompt"),
        ({"admin_key": 12345678}, "admin_key"),
        ({"admin_key": "has spaces in it"}, "admin_key"),
        ({"admin_key": "short"}, "admin_key"),
        ({}, "admin_key"),  # a new connection needs a key
        ({"admin_key": ADMIN_KEY, "provider": "openai"}, "provider"),
        ({"admin_key": ADMIN_KEY, "api_key_ids": "apikey_1"}, "api_key_ids"),
        ({"admin_key": ADMIN_KEY, "api_key_ids": [1, 2]}, "api_key_ids"),
        ({"admin_key": ADMIN_KEY, "workspace_ids": ["not an id!"]}, "workspace_ids"),
    ],
)
def test_bad_bodies_are_400_naming_the_field_and_save_nothing(client, keys, body, field):
    response = call(client, "put", keys["admin"], body)
    assert response.status_code == 400, response.content
    assert field in [e["field"] for e in response.json()["errors"]]
    assert not ProviderConnection.objects.exists()


def test_malformed_bodies(client, keys):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {keys['admin']}"}
    assert (
        client.put("/api/v1/provider-connection", data="{", content_type="application/json", **extra).status_code == 400
    )
    assert (
        client.put("/api/v1/provider-connection", data="[]", content_type="application/json", **extra).status_code
        == 400
    )
    assert (
        client.put("/api/v1/provider-connection", data="admin_key=x", content_type="text/plain", **extra).status_code
        == 415
    )


# --- the Settings → Provider page ---------------------------------------------------------


@pytest.fixture
def admin_client(client, db, django_user_model):  # type: ignore[no-untyped-def]
    from projects.models import Membership
    from projects.services import project_get_or_create

    user = django_user_model.objects.create_user("boss", "boss@example.com", "pw-boss-12345")
    Membership.objects.create(user=user, project=project_get_or_create(slug="acme"), role=Membership.Role.ADMIN)
    client.force_login(user)
    return client


def test_an_admin_connects_on_the_page_and_never_sees_the_key_again(admin_client):
    page = admin_client.get("/projects/acme/provider")
    assert page.status_code == 200
    assert "Connect Anthropic" in page.content.decode()
    response = admin_client.post(
        "/projects/acme/provider", {"admin_key": ADMIN_KEY, "api_key_ids": "apikey_1, apikey_2", "workspace_ids": ""}
    )
    assert response.status_code == 302
    connection = ProviderConnection.objects.get()
    assert connection.api_key_ids == ["apikey_1", "apikey_2"]
    html = admin_client.get("/projects/acme/provider").content.decode()
    assert "…XYZ9" in html
    assert ADMIN_KEY not in html
    assert ADMIN_KEY[:-4] not in html
    assert "apikey_1, apikey_2" in html


def test_the_page_shows_the_last_sync_error(admin_client, fake_api, connected):
    provider_connection_set(
        project=connected.project, admin_key="sk-ant-admin01-wrong-key-0000", api_key_ids=[], workspace_ids=[]
    )
    connected.refresh_from_db()
    assert not provider_usage_sync(connection=connected).ok
    html = admin_client.get("/projects/acme/provider").content.decode()
    assert "Last sync failed" in html
    assert "Anthropic refused the Admin API key (401)" in html
    assert "sk-ant-admin01-wrong-key" not in html
    reconciliation = admin_client.get("/reconciliation?project=acme").content.decode()
    assert "The last sync failed" in reconciliation
    api = admin_client.get("/api/v1/provider-connection").json()
    assert api["last_error"].startswith("Anthropic refused the Admin API key (401)")


def test_sync_now_runs_the_sync(admin_client, fake_api, connected):
    for model, figures in PROVIDER_DAY.items():
        fake_api.days[(today() - timedelta(days=1), model)] = figures
    response = admin_client.post("/projects/acme/provider/sync")
    assert response.status_code == 302
    connected.refresh_from_db()
    assert connected.last_synced_at is not None
    assert connected.days.count() == 3  # eager Celery in tests: the queued task has run


def test_a_bad_form_is_400_and_keeps_nothing(admin_client):
    response = admin_client.post("/projects/acme/provider", {"admin_key": "bad key with spaces"})
    assert response.status_code == 400
    assert "doesn&#x27;t look like an API key" in response.content.decode()
    assert "bad key with spaces" not in response.content.decode()  # a password input is not re-filled
    assert not ProviderConnection.objects.exists()


def test_disconnect(admin_client, connected):
    assert admin_client.post("/projects/acme/provider/delete").status_code == 302
    assert not ProviderConnection.objects.exists()


def test_viewers_cannot_open_the_provider_page_but_see_reconciliation(client, connected, django_user_model):
    from projects.models import Membership

    user = django_user_model.objects.create_user("view", "view@example.com", "pw-view-12345")
    Membership.objects.create(user=user, project=connected.project, role=Membership.Role.VIEWER)
    client.force_login(user)
    assert client.get("/projects/acme/provider").status_code == 403
    assert client.post("/projects/acme/provider", {"admin_key": ADMIN_KEY}).status_code == 403
    assert client.post("/projects/acme/provider/delete").status_code == 403
    assert client.post("/projects/acme/provider/sync").status_code == 403
    page = client.get("/reconciliation")  # the first (here the only) project the user sees
    assert page.status_code == 200
    assert ADMIN_KEY not in page.content.decode()
    assert "acme" in page.content.decode()
    assert client.get("/reconciliation?project=other").status_code == 404


def test_reconciliation_without_a_connection_says_how_to_connect(admin_client):
    html = admin_client.get("/reconciliation?project=acme").content.decode()
    assert "This project is not connected to Anthropic" in html
    assert 'href="/projects/acme/provider"' in html
