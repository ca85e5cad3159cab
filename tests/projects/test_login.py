"""/login and /logout, and the failed-login limit (per username and per IP, failing open)."""

from __future__ import annotations

import pytest
from django.test import Client

PASSWORD = "login-test-pass-42"


@pytest.fixture
def alice(db, django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("alice", "alice@example.com", PASSWORD)


def log_in(client: Client, username: str, password: str, ip: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post("/login", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_the_login_page_logs_anyone_in_and_goes_where_they_were_going(alice):
    client = Client()
    page = client.get("/login?next=/spend")
    assert page.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in page.content
    assert b'value="/spend"' in page.content
    resp = client.post("/login", {"username": "alice", "password": PASSWORD, "next": "/spend"})
    assert resp.status_code == 302
    assert resp["Location"] == "/spend"
    assert client.get("/spend").status_code == 200


def test_a_wrong_password_shows_the_form_again_with_an_error(alice):
    resp = log_in(Client(), "alice", "nope")
    assert resp.status_code == 200
    assert b"Please enter a correct username and password" in resp.content


def test_logout_is_a_post_and_ends_the_session(alice):
    client = Client()
    client.force_login(alice)
    assert client.get("/logout").status_code == 405  # a link or an <img> can't log anyone out
    resp = client.post("/logout")
    assert resp.status_code == 302
    assert resp["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_the_login_form_checks_csrf(alice):
    client = Client(enforce_csrf_checks=True)
    assert client.post("/login", {"username": "alice", "password": PASSWORD}).status_code == 403


def test_ten_failures_for_a_username_lock_it_from_every_address(alice, settings):
    for i in range(settings.TALLY_LOGIN_MAX_FAILURES):
        assert log_in(Client(), "alice", f"wrong-{i}", ip=f"10.0.1.{i}").status_code == 200
    # The right password, from a fresh address, is refused too: the lock is on the username.
    resp = log_in(Client(), "alice", PASSWORD, ip="10.0.2.1")
    assert resp.status_code == 429
    assert b"Too many failed login attempts" in resp.content
    assert b"15 more minutes" in resp.content
    assert "_auth_user_id" not in resp.client.session
    # Usernames are compared as typed modulo case and spaces.
    assert log_in(Client(), " ALICE ", PASSWORD, ip="10.0.2.2").status_code == 429


def test_ten_failures_from_an_address_lock_it_for_every_username(alice, settings, django_user_model):
    django_user_model.objects.create_user("bob", password=PASSWORD)
    for i in range(settings.TALLY_LOGIN_MAX_FAILURES):
        log_in(Client(), f"guess-{i}", "wrong", ip="10.0.3.3")
    assert log_in(Client(), "bob", PASSWORD, ip="10.0.3.3").status_code == 429
    # Bob from elsewhere is fine: the lock is on the address.
    assert log_in(Client(), "bob", PASSWORD, ip="10.0.3.4").status_code == 302


def test_the_lock_ends_with_the_window(alice, settings):
    settings.TALLY_LOGIN_WINDOW_S = 1
    for i in range(settings.TALLY_LOGIN_MAX_FAILURES):
        log_in(Client(), "alice", f"wrong-{i}")
    assert log_in(Client(), "alice", PASSWORD).status_code == 429
    import time

    time.sleep(2.1)
    assert log_in(Client(), "alice", PASSWORD).status_code == 302


def test_a_success_clears_the_username_count_but_not_the_address_count(alice, settings):
    limit = settings.TALLY_LOGIN_MAX_FAILURES
    for i in range(limit - 1):
        log_in(Client(), "alice", f"wrong-{i}", ip="10.0.4.4")
    assert log_in(Client(), "alice", PASSWORD, ip="10.0.4.5").status_code == 302
    for i in range(limit - 1):  # would be locked by now had the success not cleared the username
        log_in(Client(), "alice", f"again-{i}", ip="10.0.4.6")
    assert log_in(Client(), "alice", PASSWORD, ip="10.0.4.7").status_code == 302
    # 9 failures from 10.0.4.4 so far: one more locks that address.
    log_in(Client(), "someone", "wrong", ip="10.0.4.4")
    assert log_in(Client(), "alice", PASSWORD, ip="10.0.4.4").status_code == 429


def test_a_form_with_no_password_neither_counts_nor_clears(alice, settings):
    for i in range(settings.TALLY_LOGIN_MAX_FAILURES):
        log_in(Client(), "alice", f"wrong-{i}")
    # An empty password authenticates no one: it must not reset the count (else it'd be a bypass).
    Client().post("/login", {"username": "alice", "password": ""}, REMOTE_ADDR="10.9.9.9")
    assert log_in(Client(), "alice", PASSWORD, ip="10.9.9.8").status_code == 429


def test_logins_go_on_when_redis_is_down(alice, settings):
    from projects.login_limit import login_limit_reset

    settings.TALLY_REDIS_URL = "redis://127.0.0.1:1/0"
    login_limit_reset()
    for i in range(settings.TALLY_LOGIN_MAX_FAILURES + 2):
        assert log_in(Client(), "alice", f"wrong-{i}").status_code == 200
    assert log_in(Client(), "alice", PASSWORD).status_code == 302


def test_the_admin_login_is_limited_too(db, django_user_model, settings):
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    for i in range(settings.TALLY_LOGIN_MAX_FAILURES):
        Client().post("/admin/login/", {"username": "root", "password": f"wrong-{i}"}, REMOTE_ADDR=f"10.1.0.{i}")
    resp = Client().post("/admin/login/", {"username": "root", "password": PASSWORD}, REMOTE_ADDR="10.1.1.1")
    assert b"Too many failed login attempts" in resp.content
    assert "_auth_user_id" not in resp.client.session
