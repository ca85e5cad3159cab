"""Notification channels (issue 15 item 1, CONTRACT §5 `channels`): Apprise URLs on rules, budgets
and the project, delivered through the outbox to a real HTTP sink on loopback (Apprise's json://)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest
from django.core import mail
from django.db import connection

from alerts.channels import channel_decrypt, channel_encrypt, channel_mask, channels_resolve
from alerts.models import AlertRule, Budget, DigestSubscription, Notification, ProjectChannels
from alerts.outbox import notifications_send_due
from alerts.services import budgets_check, digest_send, rules_evaluate
from projects.services import ingest_key_create
from rollups.services import rollup_until_current
from tests.alerts.test_api import call
from tests.alerts.test_browser import acme, log_in, shot, user
from tests.alerts.test_email_end_to_end import _spend_events, free_port
from tests.alerts.test_ui import client_for, member
from tests.rollups.helpers import ingest


class Sink:
    """A JSON webhook receiver on loopback that can go away and come back on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.posts: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts.append({"path": self.path, "json": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook/s3cret-token"


@pytest.fixture
def sink(settings):  # type: ignore[no-untyped-def]
    settings.TALLY_BASE_URL = "https://tally.example.com"
    server = Sink(free_port())
    server.start()
    yield server
    server.stop()


def _breach(project_slug: str = "acme") -> tuple[Any, datetime, datetime]:
    """$4.00 of Opus spend from `support` in the last closed hour."""
    key = ingest_key_create(project_slug=project_slug, environment_name="prod").key
    now = datetime.now(tz=UTC).replace(minute=5, second=0, microsecond=0)
    closed = now.replace(minute=0) - timedelta(hours=1)
    ingest(key, _spend_events(closed, "o", 4, "claude-opus-4-7", "support", 200_000))
    rollup_until_current()
    return key, now, closed


@pytest.mark.usefixtures("clean_events")
def test_a_breach_posts_once_to_the_channel_with_the_emails_content(transactional_db, sink):
    key, now, closed = _breach()
    AlertRule.objects.create(
        project=key.project,
        name="Spend",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=1.0,
        recipients=["oncall@example.com"],
        channels_encrypted=[channel_encrypt(sink.url)],
    )

    assert rules_evaluate(now=now) == {"opened": 1}
    assert len(sink.posts) == 1
    assert len(mail.outbox) == 1  # the email goes out beside it, as before
    post = sink.posts[0]
    assert post["path"] == "/hook/s3cret-token"
    assert post["json"]["title"] == "[Tally] acme: spend $4.00 > $1.00" == mail.outbox[0].subject
    message = post["json"]["message"]
    assert message == mail.outbox[0].body.strip()  # the same text as the email (Apprise trims the end)
    assert "Value: $4.00, threshold $1.00" in message
    assert "service support $4.00, 100%" in message
    window = f"from={closed:%Y-%m-%dT%H}:00:00Z&to={closed + timedelta(hours=1):%Y-%m-%dT%H}:00:00Z"
    assert f"https://tally.example.com/spend?project=acme&{window}" in message
    rows = Notification.objects.order_by("pk")
    assert [(r.channel_masked, r.recipients, r.sent_at is not None) for r in rows] == [
        ("", ["oncall@example.com"], True),
        (f"json://127.0.0.1:{sink.port}/…", [], True),
    ]
    assert rows[1].dedupe_key.startswith(f"{rows[0].dedupe_key}:channel:")

    # Evaluating again, and another send pass, post nothing more: once per incident.
    assert rules_evaluate(now=now + timedelta(seconds=30)) == {"open": 1}
    assert notifications_send_due(now=now + timedelta(hours=1)) == (0, 0)
    assert len(sink.posts) == 1
    # The quiet hour resolves it: one more post, the resolution.
    assert rules_evaluate(now=now + timedelta(hours=2)) == {"resolved": 1}
    assert [p["json"]["title"] for p in sink.posts[1:]] == ["[Tally] Resolved: acme: Spend"]


@pytest.mark.usefixtures("clean_events")
def test_the_sink_being_down_delays_the_post_and_does_not_lose_it(transactional_db, sink):
    key, now, _ = _breach()
    AlertRule.objects.create(
        project=key.project,
        name="Spend",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=1.0,
        recipients=[],
        channels_encrypted=[channel_encrypt(sink.url)],
    )
    sink.stop()
    assert rules_evaluate(now=now) == {"opened": 1}
    row = Notification.objects.get()
    assert (row.sent_at, row.failed_at, row.attempts, row.status) == (None, None, 1, "retrying")
    assert "Connection error" in row.last_error
    assert "s3cret" not in row.last_error
    assert row.next_attempt_at >= row.created_at + timedelta(seconds=30)  # the first backoff step
    assert notifications_send_due() == (0, 0)  # not due yet: nothing attempted

    sink.start()  # back, same port
    assert notifications_send_due(now=row.next_attempt_at + timedelta(seconds=1)) == (1, 0)
    assert len(sink.posts) == 1
    assert sink.posts[0]["json"]["title"] == "[Tally] acme: spend $4.00 > $1.00"
    row.refresh_from_db()
    assert row.sent_at is not None
    assert row.last_error == ""
    assert notifications_send_due(now=row.next_attempt_at + timedelta(hours=1)) == (0, 0)
    assert len(sink.posts) == 1


@pytest.mark.usefixtures("clean_events")
def test_a_channel_saved_under_another_secret_fails_visibly_and_the_email_still_goes(transactional_db, sink, settings):
    key, now, _ = _breach()
    settings.TALLY_ENCRYPTION_KEY = "the-old-secret"
    stale = channel_encrypt(sink.url)
    settings.TALLY_ENCRYPTION_KEY = "the-new-secret"
    AlertRule.objects.create(
        project=key.project,
        name="Spend",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=1.0,
        recipients=["oncall@example.com"],
        channels_encrypted=[stale],
    )
    assert rules_evaluate(now=now) == {"opened": 1}
    assert len(mail.outbox) == 1
    assert sink.posts == []
    row = Notification.objects.get(channel_encrypted=stale)
    assert (row.status, row.channel_masked) == ("failed", "(unreadable channel)")
    assert row.last_error.startswith("cannot decrypt the channel URL")


@pytest.fixture
def admin_key(db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod", scope="admin").secret


RULE = {"name": "Spend", "metric": "cost_usd", "window": "hour", "condition": "above", "threshold": 25.0}
SECRET_URL = "json://user:pa55w0rd@hooks.example.com/tally/s3cret?token=t0ken"


def test_a_bad_url_is_a_400_naming_channels_and_its_entry_without_the_secret(admin_key):
    resp = call(
        "post",
        "/api/v1/alert-rules",
        admin_key,
        {**RULE, "recipients": [], "channels": ["json://127.0.0.1:1/ok", "nope://s3cret@bad/x"]},
    )
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert [e["field"] for e in errors] == ["channels"]
    assert errors[0]["message"].startswith("channels[1] (nope://ba…/…) is not a notification URL")
    assert "s3cret" not in resp.content.decode()
    assert AlertRule.objects.count() == 0
    # Neither a recipient nor a channel: named on recipients; a channel alone is enough.
    resp = call("post", "/api/v1/alert-rules", admin_key, {**RULE, "recipients": [], "channels": []})
    assert (resp.status_code, resp.json()["errors"][0]["field"]) == (400, "recipients")
    resp = call("post", "/api/v1/alert-rules", admin_key, {**RULE, "channels": "json://x"})
    assert (resp.status_code, resp.json()["errors"][0]["field"]) == (400, "channels")


def test_channels_are_stored_encrypted_and_returned_masked(admin_key):
    resp = call("post", "/api/v1/alert-rules", admin_key, {**RULE, "recipients": [], "channels": [SECRET_URL]})
    assert resp.status_code == 201, resp.content
    rule = resp.json()
    assert rule["channels"] == ["json://hooks.example.com/…"]
    assert "s3cret" not in resp.content.decode()
    assert "pa55w0rd" not in resp.content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT channels_encrypted::text FROM alerts_alertrule WHERE id = %s", [rule["id"]])
        column = cursor.fetchone()[0]
    assert "s3cret" not in column
    assert "hooks.example.com" not in column
    token = AlertRule.objects.get().channels_encrypted[0]
    assert token.startswith("gAAAAA")  # a Fernet token
    assert channel_decrypt(token) == SECRET_URL

    # A PATCH without channels, or with the masked ones it got, keeps the stored URL.
    assert call("patch", f"/api/v1/alert-rules/{rule['id']}", admin_key, {"threshold": 30}).status_code == 200
    got = call("get", f"/api/v1/alert-rules/{rule['id']}", admin_key).json()
    added = "slack://T0AAAA/B0BBBB/XyZsecret"
    resp = call("patch", f"/api/v1/alert-rules/{rule['id']}", admin_key, {"channels": [*got["channels"], added]})
    assert resp.json()["channels"] == ["json://hooks.example.com/…", "slack://T0…/…"]
    stored = AlertRule.objects.get().channels_encrypted
    assert [channel_decrypt(t) for t in stored] == [SECRET_URL, added]
    # Leaving one out removes it.
    resp = call("patch", f"/api/v1/alert-rules/{rule['id']}", admin_key, {"channels": ["slack://T0…/…"]})
    assert [channel_decrypt(t) for t in AlertRule.objects.get().channels_encrypted] == [added]


def test_masks_hide_credentials_paths_and_tokens_in_the_host():
    assert channel_mask("json://127.0.0.1:8123/hook?x=1") == "json://127.0.0.1:8123/…"
    assert channel_mask("mailto://me:pw@gmail.com") == "mailto://gmail.com/…"
    assert channel_mask("discord://1234567/abcdef") == "discord://12…/…"
    assert channel_mask("json://hooks.example.com") == "json://hooks.example.com"
    # Two channels that mask alike are each kept by their own masked line, in order.
    a, b = "json://h.example.com/one", "json://h.example.com/two"
    assert channels_resolve(["json://h.example.com/…", "json://h.example.com/…"], stored=[a, b]) == [a, b]


@pytest.fixture
def admin_client(project, django_user_model):  # type: ignore[no-untyped-def]
    """An admin of `acme` (tests/conftest.py's project)."""
    return client_for(member(django_user_model, project, "ada", "admin"))


def test_the_rule_form_masks_the_channel_and_the_test_button_reports_each_result(admin_client, sink, caplog):
    form = {
        "name": "Spend",
        "metric": "cost_usd",
        "window": "hour",
        "condition": "above",
        "threshold": "5",
        "recipients": "",
        "channels": f"{sink.url}\njson://127.0.0.1:1/closed",
        "cooldown_minutes": "60",
        "min_requests": "20",
        "enabled": "true",
    }
    response = admin_client.post("/alerts/new?project=acme", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = AlertRule.objects.get()
    page = admin_client.get(f"/alerts/{rule.pk}/edit").content.decode()
    assert f"json://127.0.0.1:{sink.port}/…" in page
    assert "s3cret" not in page
    for listing in ("/alerts/?project=acme", f"/alerts/{rule.pk}/"):
        html = admin_client.get(listing).content.decode()
        assert f"<code>json://127.0.0.1:{sink.port}/…</code>" in html
        assert "s3cret" not in html
    # Saving the page as shown keeps both channels.
    response = admin_client.post(
        f"/alerts/{rule.pk}/edit",
        {**form, "channels": f"json://127.0.0.1:{sink.port}/…\njson://127.0.0.1:1/…", "threshold": "6"},
    )
    assert response.status_code == 302
    assert [channel_decrypt(t) for t in AlertRule.objects.get().channels_encrypted] == [
        sink.url,
        "json://127.0.0.1:1/closed",
    ]
    response = admin_client.post(f"/alerts/{rule.pk}/test", follow=True)
    html = response.content.decode()
    assert f"Test notification sent to json://127.0.0.1:{sink.port}/…" in html
    assert "Test notification to json://127.0.0.1:1/… failed: A Connection error occurred" in html
    assert [p["json"]["title"] for p in sink.posts] == ["Tally test notification"]
    assert Notification.objects.count() == 0  # sent directly, not through the outbox
    # A bad line is a form error naming it.
    response = admin_client.post(f"/alerts/{rule.pk}/edit", {**form, "channels": "nope://t0ken/s3cret"})
    assert response.status_code == 200
    assert "channels[0] (nope://t0…/…) is not a notification URL" in response.content.decode()
    # Nor does Apprise's own log of the bad URL carry it in clear.
    assert "s3cret" not in caplog.text
    assert "Unparseable URL nope://t0…/…" in caplog.text


def test_budgets_and_the_digest_notify_their_channels(admin_client, sink):
    response = admin_client.post(
        "/alerts/budgets/?project=acme",
        {
            "name": "Cap",
            "period": "month",
            "limit_usd": "0.01",
            "recipients": "",
            "channels": sink.url,
            "enabled": "true",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert channel_decrypt(Budget.objects.get().channels_encrypted[0]) == sink.url

    response = admin_client.post(
        "/alerts/digest/?project=acme", {"enabled": "on", "recipients": "", "channels": sink.url}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert DigestSubscription.objects.get().recipients == []
    assert channel_decrypt(ProjectChannels.objects.get().channels_encrypted[0]) == sink.url
    page = admin_client.get("/alerts/digest/?project=acme").content.decode()
    assert f"json://127.0.0.1:{sink.port}/…" in page
    assert "s3cret" not in page

    day = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    assert digest_send() == 1
    rows = list(Notification.objects.all())
    assert [(r.kind, r.channel_masked) for r in rows] == [("digest", f"json://127.0.0.1:{sink.port}/…")]
    assert notifications_send_due() == (1, 0)  # the test's transaction never commits: send by hand
    assert [p["json"]["title"] for p in sink.posts] == [f"[Tally] acme daily summary for {day:%Y-%m-%d}"]
    assert digest_send() == 0  # once per day
    outbox = admin_client.get("/alerts/outbox/?project=acme").content.decode()
    assert f"<code>json://127.0.0.1:{sink.port}/…</code>" in outbox


@pytest.mark.usefixtures("clean_events")
def test_a_budget_alert_posts_to_the_budgets_channel_once_per_level(transactional_db, sink):
    key, now, _ = _breach()
    Budget.objects.create(
        project=key.project, name="Cap", period="month", limit_usd=4, channels_encrypted=[channel_encrypt(sink.url)]
    )
    assert budgets_check(now=now) == 2
    assert sorted(p["json"]["title"] for p in sink.posts) == [
        "[Tally] acme: Cap at 100% ($4.00 of $4.00 monthly)",
        "[Tally] acme: Cap at 80% ($4.00 of $4.00 monthly)",
    ]
    assert "https://tally.example.com/spend?project=acme" in sink.posts[0]["json"]["message"]
    assert budgets_check(now=now) == 0
    assert len(sink.posts) == 2


__all__ = ["acme"]  # the browser test's fixture, imported


@pytest.mark.browser
def test_in_the_browser_a_rule_saved_with_a_channel_and_per_shows_the_channel_masked_and_tests_it(
    live_server, acme, sink, django_user_model, browser
):
    """Issue 15's browser acceptance: a rule made in the form with a channel and `per`."""
    page = browser
    user(django_user_model, acme, "ada", "admin")
    log_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/alerts/new?project=acme")
    page.fill("#id_name", "Spend to the webhook")
    page.select_option("#id_metric", "cost_usd")
    page.select_option("#id_window", "day")
    page.select_option("#id_condition", "above")
    page.fill("#id_threshold", "5")
    page.select_option("#id_per", "user_id")
    page.fill("#id_channels", sink.url)
    page.click("form[data-form=rule] button[type=submit]")
    page.wait_for_url(lambda url: urlparse(url).path == "/alerts/")
    rule = AlertRule.objects.get()
    assert (rule.recipients, [channel_decrypt(t) for t in rule.channels_encrypted]) == ([], [sink.url])
    assert (rule.per, rule.window) == ("user_id", "day")

    page.goto(f"{live_server.url}/alerts/{rule.pk}/")
    assert page.text_content("[data-channels]").strip() == f"json://127.0.0.1:{sink.port}/…"
    assert page.get_attribute("[data-per]", "data-per") == "user_id"
    assert "s3cret" not in page.content()
    shot(page, "rule-with-channel-and-per")

    page.goto(f"{live_server.url}/alerts/{rule.pk}/edit")
    assert page.input_value("#id_channels") == f"json://127.0.0.1:{sink.port}/…"
    assert "s3cret" not in page.content()
    page.click("form[data-form=rule-test] button[type=submit]")
    page.wait_for_selector(".messages")
    assert f"Test notification sent to json://127.0.0.1:{sink.port}/…" in page.text_content(".messages")
    assert [p["json"]["title"] for p in sink.posts] == ["Tally test notification"]
    shot(page, "rule-channels")
