from __future__ import annotations

from django.test import Client


def test_healthz_answers_without_dependencies():
    resp = Client().get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(db):
    resp = Client().get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_when_the_broker_is_unreachable(db, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    resp = Client().get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"] == {"database": "ok", "broker": "down"}


def test_admin_login_page_renders(db):
    resp = Client().get("/admin/login/")
    assert resp.status_code == 200
    assert b"password" in resp.content.lower()


def test_values_postgresql_cannot_store_are_400_not_500(db):
    from projects.services import ingest_key_create

    read = ingest_key_create(project_slug="nul", environment_name="prod", scope="read").secret
    resp = Client().get("/api/v1/metrics?service=a%00b", HTTP_AUTHORIZATION=f"Bearer {read}")
    assert resp.status_code == 400
    # Caught by core.http's middleware for every API path, naming the parameter as the OpenAPI 400 says.
    assert resp.json() == {"error": "service: must not contain a NUL character", "field": "service"}


def test_a_value_postgresql_refuses_deep_in_a_view_is_400_not_500(db):
    import json

    from django.db import connection
    from django.test import RequestFactory

    from core.http import database_unavailable_as_503

    @database_unavailable_as_503
    def view(request):  # type: ignore[no-untyped-def]
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::text", ["a\x00b"])  # PostgreSQL text cannot hold NUL
        raise AssertionError("PostgreSQL accepted a NUL byte")

    resp = view(RequestFactory().get("/"))
    assert resp.status_code == 400
    assert json.loads(resp.content)["error"].startswith("invalid input: ")
