"""The project admin pages: keys, price overrides, retention, members (admins of the project only)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client

from pricing.models import PriceOverride
from projects.models import IngestKey, Membership, Project
from tests.conftest import post_events

EVENT = {"request_id": "req_1", "model": "claude-sonnet-4-6", "latency_ms": 812, "input_tokens": 10}


@pytest.fixture
def acme(db):  # type: ignore[no-untyped-def]
    from projects.services import environment_get_or_create, project_get_or_create

    project = project_get_or_create(slug="acme", name="Acme")
    environment_get_or_create(project=project, name="prod")
    return project


@pytest.fixture
def boss(acme, django_user_model):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user("boss", password="pw-boss-12345")
    Membership.objects.create(user=user, project=acme, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def admin(boss):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(boss)
    return client


@pytest.fixture
def viewer(acme, django_user_model):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user("vera", password="pw-vera-12345")
    Membership.objects.create(user=user, project=acme, role=Membership.Role.VIEWER)
    client = Client()
    client.force_login(user)
    return client


# --- keys -----------------------------------------------------------------------------------------


def test_a_created_key_is_shown_once_and_then_only_by_its_prefix(admin, acme):
    resp = admin.post("/projects/acme/keys", {"environment": "staging", "scope": "read", "name": "grafana"})
    assert resp.status_code == 200
    assert "no-store" in resp["Cache-Control"]
    secret = re.search(r"data-secret>(tly_[^<]+)<", resp.content.decode()).group(1)
    key = IngestKey.objects.get(name="grafana")
    assert (key.project, key.environment.name, key.scope) == (acme, "staging", "read")
    assert secret.startswith(key.prefix)
    page = admin.get("/projects/acme/keys").content.decode()
    assert secret not in page
    assert key.prefix in page
    assert "grafana" in page


def test_a_key_works_until_revoked_and_is_refused_right_after(admin, acme):
    resp = admin.post("/projects/acme/keys", {"environment": "prod", "scope": "ingest"})
    secret = re.search(r"data-secret>(tly_[^<]+)<", resp.content.decode()).group(1)
    ingest = Client()
    assert post_events(ingest, secret, EVENT).status_code == 202
    key = IngestKey.objects.get()
    assert key.last_used_at is not None
    resp = admin.post(f"/projects/acme/keys/{key.pk}/revoke")
    assert resp.status_code == 302
    assert "is revoked" in admin.get(resp["Location"]).content.decode()
    # The same process, the very next request: nothing caches a key.
    assert post_events(ingest, secret, {**EVENT, "request_id": "req_2"}).status_code == 401
    assert IngestKey.objects.get().revoked_at is not None


def test_key_form_errors_name_the_field(admin, acme):
    resp = admin.post("/projects/acme/keys", {"environment": "not a slug!", "scope": "root"})
    assert resp.status_code == 400
    errors = resp.context["form"].errors
    assert set(errors) == {"environment", "scope"}
    assert IngestKey.objects.count() == 0
    assert "tly_" not in resp.content.decode()


def test_forms_need_the_csrf_token(boss, acme):
    client = Client(enforce_csrf_checks=True)
    client.force_login(boss)
    for url, data in (
        ("/projects/acme/keys", {"environment": "prod", "scope": "ingest"}),
        ("/projects/acme/retention", {"raw_retention_days": "5"}),
        ("/projects/acme/members", {"username": "boss", "role": "viewer"}),
    ):
        assert client.post(url, data).status_code == 403, url
        page = client.get(url).content.decode()
        assert page.count('name="csrfmiddlewaretoken"') == page.count('method="post"'), url
    assert IngestKey.objects.count() == 0


# --- price overrides ------------------------------------------------------------------------------

PRICE = {
    "model": "claude-sonnet-4-6*",
    "effective_from": "2026-01-01T00:00",
    "input_usd_per_mtok": "2.5",
    "output_usd_per_mtok": "12",
    "batch_multiplier": "0.5",
    "note": "negotiated",
}


def test_an_override_is_added_and_deleted_and_the_price_cache_is_dropped(
    admin, acme, monkeypatch, django_capture_on_commit_callbacks
):
    forgot = []
    monkeypatch.setattr("pricing.services.pricers_forget", lambda: forgot.append(1))
    with django_capture_on_commit_callbacks(execute=True):
        resp = admin.post("/projects/acme/prices", PRICE)
    assert resp.status_code == 302
    assert forgot == [1]
    override = PriceOverride.objects.get()
    assert (override.project, override.model, override.input_usd_per_mtok) == (
        acme,
        "claude-sonnet-4-6*",
        Decimal("2.5"),
    )
    assert override.effective_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert override.cache_read_usd_per_mtok is None  # empty: the standard multiplier
    page = admin.get(resp["Location"]).content.decode()
    assert "manage.py reprice" in page
    assert "claude-sonnet-4-6*" in page
    with django_capture_on_commit_callbacks(execute=True):
        resp = admin.post(f"/projects/acme/prices/{override.pk}/delete")
    assert resp.status_code == 302
    assert forgot == [1, 1]
    assert not PriceOverride.objects.exists()
    assert "manage.py reprice" in admin.get(resp["Location"]).content.decode()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": "claude-*-4"}, "model"),
        ({"model": "*"}, "model"),
        ({"model": "two words"}, "model"),
        ({"model": ""}, "model"),
        ({"input_usd_per_mtok": "-1"}, "input_usd_per_mtok"),
        ({"output_usd_per_mtok": "abc"}, "output_usd_per_mtok"),
        ({"cache_read_usd_per_mtok": "-0.1"}, "cache_read_usd_per_mtok"),
        ({"batch_multiplier": "-1"}, "batch_multiplier"),
        ({"effective_from": "yesterday"}, "effective_from"),
    ],
)
def test_an_invalid_override_is_refused_with_the_field_named(admin, acme, changes, field):
    resp = admin.post("/projects/acme/prices", {**PRICE, **changes})
    assert resp.status_code == 400
    assert field in resp.context["form"].errors
    assert f'data-error-for="{field}"' in resp.content.decode()
    assert not PriceOverride.objects.exists()


def test_a_second_override_for_the_same_model_and_instant_is_refused(admin, acme):
    assert admin.post("/projects/acme/prices", PRICE).status_code == 302
    resp = admin.post("/projects/acme/prices", PRICE)
    assert resp.status_code == 400
    assert "already has an override" in resp.content.decode()
    assert PriceOverride.objects.count() == 1


# --- retention ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [("1", True), ("3650", True), ("0", False), ("3651", False), ("-5", False), ("ten", False), ("", False)],
)
def test_retention_is_1_to_3650_days(admin, acme, value, ok):
    resp = admin.post("/projects/acme/retention", {"raw_retention_days": value})
    assert resp.status_code == (302 if ok else 400)
    assert Project.objects.get().raw_retention_days == (int(value) if ok else 30)


def test_the_retention_page_shows_the_current_value(admin, acme):
    Project.objects.filter(pk=acme.pk).update(raw_retention_days=45)
    assert 'value="45"' in admin.get("/projects/acme/retention").content.decode()


# --- members --------------------------------------------------------------------------------------


def test_members_are_added_changed_and_removed(admin, acme, django_user_model):
    dana = django_user_model.objects.create_user("dana", password="pw-dana-12345")
    assert admin.post("/projects/acme/members", {"username": "dana", "role": "viewer"}).status_code == 302
    membership = Membership.objects.get(user=dana)
    assert membership.role == "viewer"
    assert "dana" in admin.get("/projects/acme/members").content.decode()
    assert admin.post(f"/projects/acme/members/{membership.pk}", {"role": "admin"}).status_code == 302
    assert Membership.objects.get(user=dana).role == "admin"
    assert admin.post(f"/projects/acme/members/{membership.pk}/remove").status_code == 302
    assert not Membership.objects.filter(user=dana).exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "ghost", "role": "viewer"}, "No active user named"),
        ({"username": "boss", "role": "viewer"}, "already a member"),
        ({"username": "dana", "role": "owner"}, "Select a valid choice"),
    ],
)
def test_adding_a_member_names_what_is_wrong(admin, acme, django_user_model, data, message):
    django_user_model.objects.create_user("dana", password="pw-dana-12345")
    resp = admin.post("/projects/acme/members", data)
    assert resp.status_code == 400
    assert message in resp.content.decode()
    assert Membership.objects.count() == 1


def test_the_last_admin_can_be_neither_demoted_nor_removed(admin, acme, boss):
    mine = Membership.objects.get(user=boss)
    resp = admin.post(f"/projects/acme/members/{mine.pk}", {"role": "viewer"}, follow=True)
    assert "last admin" in resp.content.decode()
    resp = admin.post(f"/projects/acme/members/{mine.pk}/remove", follow=True)
    assert "last admin" in resp.content.decode()
    assert Membership.objects.get(user=boss).role == "admin"


def test_with_a_second_admin_the_first_may_step_down(admin, acme, boss, django_user_model):
    other = django_user_model.objects.create_user("eve", password="pw-eve-123456")
    Membership.objects.create(user=other, project=acme, role="admin")
    mine = Membership.objects.get(user=boss)
    assert admin.post(f"/projects/acme/members/{mine.pk}", {"role": "viewer"}).status_code == 302
    assert Membership.objects.get(user=boss).role == "viewer"
    # Now a viewer: the page that made the change refuses them.
    assert admin.get("/projects/acme/members").status_code == 403


# --- roles and navigation -------------------------------------------------------------------------

ADMIN_PAGES = ["/projects/acme/keys", "/projects/acme/prices", "/projects/acme/retention", "/projects/acme/members"]


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_viewers_get_403_and_strangers_404(viewer, acme, django_user_model, url):
    assert viewer.get(url).status_code == 403
    stranger = Client()
    stranger.force_login(django_user_model.objects.create_user("zed", password="pw-zed-123456"))
    assert stranger.get(url).status_code == 404
    assert Client().get(url)["Location"].startswith("/login?next=")


def test_admins_see_the_management_links_and_viewers_do_not(admin, viewer, acme):
    for url in ("/", "/events", *ADMIN_PAGES):
        page = admin.get(url).content.decode()
        for href in ADMIN_PAGES:
            assert f'href="{href}"' in page, (url, href)
    for url in ("/", "/spend", "/events"):
        page = viewer.get(url).content.decode()
        assert "data-admin-link" not in page, url
        assert "/projects/acme/" not in page, url


def test_superusers_manage_every_project(acme, django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-12345"))
    for url in ADMIN_PAGES:
        assert client.get(url).status_code == 200, url
