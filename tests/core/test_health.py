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
