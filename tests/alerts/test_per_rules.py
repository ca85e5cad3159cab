"""Per-dimension rules (CONTRACT §5 `per`): events ingested and rolled up through the real services,
then judged per user / service, one incident per breaching value, one message per pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.test import Client

from alerts.models import AlertRule, Incident, Notification
from alerts.services import rules_evaluate
from projects.services import ingest_key_create
from rollups.services import rollup_until_current
from tests.rollups.helpers import ingest

pytestmark = pytest.mark.usefixtures("clean_events")

# Haiku 4.5 input is $1 / MTok: 100,000 input tokens cost exactly $0.10.
DIME = 100_000


def spend(
    key,
    prefix: str,
    *,
    user_id: str = "",
    service: str = "checkout",  # type: ignore[no-untyped-def]
    dimes: int,
    when: datetime,
    calls: int = 1,
) -> None:
    """`calls` calls costing `dimes` x $0.10 together (the first call takes the remainder)."""
    per_call, first = divmod(dimes, calls)
    events = [
        {
            "request_id": f"{prefix}{i}",
            "model": "claude-haiku-4-5",
            "latency_ms": 10,
            "input_tokens": (per_call + (first if i == 0 else 0)) * DIME,
            "service": service,
            "user_id": user_id,
            "timestamp": (when - timedelta(seconds=i + 1)).isoformat(),
        }
        for i in range(calls)
    ]
    assert ingest(key, events).accepted == calls


@pytest.fixture
def key(transactional_db):  # type: ignore[no-untyped-def]
    return ingest_key_create(project_slug="acme", environment_name="prod").key


def per_rule(key, **fields) -> AlertRule:  # type: ignore[no-untyped-def]
    values = {
        "name": "Per-user spend",
        "metric": "cost_usd",
        "window": "day",
        "condition": "above",
        "threshold": 5.0,
        "per": "user_id",
        "recipients": ["oncall@example.com"],
        **fields,
    }
    return AlertRule.objects.create(project=key.project, **values)


def test_five_light_users_and_one_heavy_one_open_one_incident_and_one_message(key):
    now = datetime.now(tz=UTC).replace(microsecond=0)
    staging = ingest_key_create(project_slug="acme", environment_name="staging").key
    for n in range(1, 6):
        spend(key, f"light{n}-", user_id=f"light_{n}", dimes=10 * n - 1, calls=3, when=now)  # $0.90 ... $4.90
    spend(key, "heavy-", user_id="u_4812", dimes=61, calls=7, when=now)  # $6.10 in 7 calls
    spend(staging, "stage-", user_id="u_77", dimes=90, when=now)  # $9, but in staging: out of scope
    rollup_until_current()
    rule = per_rule(key, environment="prod")

    assert rules_evaluate(now=now) == {"opened": 1}
    incident = Incident.objects.get()
    assert (incident.dimension_value, incident.value, incident.threshold) == ("u_4812", pytest.approx(6.1), 5.0)
    assert incident.detail["window_requests"] == 7
    [message] = mail.outbox
    assert message.subject == "[Tally] prod: u_4812 spent $6.10 today > $5.00"
    assert message.to == ["oncall@example.com"]
    assert "  - u_4812 spent $6.10 today > $5.00\n" in message.body
    assert "&user=u_4812" in message.body
    for other in ("light_", "u_77", "more"):
        assert other not in message.body
    notification = Notification.objects.get()
    assert (notification.incident_id, notification.dedupe_key) == (incident.pk, f"incident:{incident.pk}:opened")

    # Re-evaluating changes nothing; a second user crossing opens its own incident and message.
    assert rules_evaluate(now=now + timedelta(seconds=5)) == {"open": 1}
    assert len(mail.outbox) == 1
    spend(key, "more5-", user_id="light_5", dimes=20, when=now)  # light_5: $4.90 + $2.00 = $6.90
    rollup_until_current()
    assert rules_evaluate(now=now + timedelta(seconds=10)) == {"opened": 1}
    assert [m.subject for m in mail.outbox][1] == "[Tally] prod: light_5 spent $6.90 today > $5.00"
    assert sorted(Incident.objects.values_list("dimension_value", flat=True)) == ["light_5", "u_4812"]

    # The day the breach happened stays judged until it is the last closed day; once the next
    # day closes with no spend, each value resolves, in one message for the pass.
    day = now.replace(hour=0, minute=0, second=0)
    assert rules_evaluate(now=day + timedelta(days=1, hours=1)) == {"open": 1}
    assert rules_evaluate(now=day + timedelta(days=2, hours=1)) == {"resolved": 1}
    assert Incident.objects.filter(resolved_at__isnull=True).count() == 0
    resolved = mail.outbox[2]
    assert resolved.subject == "[Tally] Resolved: prod: 2 users: Per-user spend"
    assert "  - light_5: opened" in resolved.body
    assert "  - u_4812: opened" in resolved.body
    assert rules_evaluate(now=day + timedelta(days=2, hours=2)) == {"ok": 1}
    assert len(mail.outbox) == 3
    assert rule.incidents.count() == 2


def test_a_value_resolves_alone_and_its_cooldown_is_its_own(key):
    """u_a and u_b breach yesterday; today only u_b spends: once today is the last closed day, u_a
    resolves and u_b stays open. u_a breaching again within its cooldown opens silently."""
    now = datetime.now(tz=UTC).replace(microsecond=0)
    day = now.replace(hour=0, minute=0, second=0)
    yesterday = now - timedelta(days=1)
    spend(key, "a-", user_id="u_a", dimes=60, when=yesterday)
    spend(key, "b-", user_id="u_b", dimes=70, when=yesterday)
    spend(key, "b2-", user_id="u_b", dimes=80, when=now)
    rollup_until_current()
    per_rule(key, cooldown_minutes=3 * 24 * 60)
    assert rules_evaluate(now=yesterday) == {"opened": 1}
    assert mail.outbox[0].subject == "[Tally] acme: 2 users over $5.00 spend (top: u_b $7.00 today)"
    assert rules_evaluate(now=day + timedelta(days=1, hours=1)) == {"resolved": 1}
    open_values = list(Incident.objects.filter(resolved_at__isnull=True).values_list("dimension_value", "value"))
    assert open_values == [("u_b", pytest.approx(8.0))]
    assert mail.outbox[1].subject == "[Tally] Resolved: acme: user u_a: Per-user spend"
    assert "  - u_a: opened" in mail.outbox[1].body
    # u_a spends again today, within 3 days of its first message: a new incident, sent to no one.
    spend(key, "a2-", user_id="u_a", dimes=55, when=now)
    rollup_until_current()
    assert rules_evaluate(now=now) == {"opened": 1}
    reopened = Incident.objects.get(dimension_value="u_a", resolved_at__isnull=True)
    assert (reopened.notified, reopened.value) == (False, pytest.approx(5.5))
    assert len(mail.outbox) == 2


def test_per_service_two_breaching_services_two_incidents_one_message(key):
    now = datetime.now(tz=UTC).replace(microsecond=0)
    spend(key, "c-", service="checkout", dimes=30, calls=3, when=now)
    spend(key, "s-", service="search", dimes=20, calls=2, when=now)
    spend(key, "p-", service="support", dimes=5, when=now)
    rollup_until_current()
    per_rule(key, name="Per-service spend", per="service", threshold=1.0)
    assert rules_evaluate(now=now) == {"opened": 1}
    incidents = {i.dimension_value: i.value for i in Incident.objects.all()}
    assert incidents == {"checkout": pytest.approx(3.0), "search": pytest.approx(2.0)}
    [message] = mail.outbox
    assert message.subject == "[Tally] acme: 2 services over $1.00 spend (top: checkout $3.00 today)"
    body = message.body
    assert body.index("  - service checkout: spend $3.00 today > $1.00\n") < body.index(
        "  - service search: spend $2.00 today > $1.00\n"
    )
    assert "&service=checkout" in body
    assert "support" not in body
    assert Notification.objects.count() == 1
    keys = {i.detail["notification_key"] for i in Incident.objects.all()}
    assert keys == {Notification.objects.get().dedupe_key}


def test_more_than_20_breaching_values_are_one_message_listing_20_and_n_more(key):
    now = datetime.now(tz=UTC).replace(microsecond=0)
    for n in range(25):  # u_00 spends $6.00, u_01 $6.10, ... u_24 $8.40
        spend(key, f"u{n}-", user_id=f"u_{n:02d}", dimes=60 + n, when=now)
    spend(key, "low-", user_id="u_low", dimes=10, when=now)
    rollup_until_current()
    per_rule(key)
    assert rules_evaluate(now=now) == {"opened": 1}
    assert Incident.objects.count() == 25
    assert Incident.objects.filter(notified=True).count() == 25
    [message] = mail.outbox
    assert message.subject == "[Tally] acme: 25 users over $5.00 spend (top: u_24 $8.40 today)"
    lines = [line for line in message.body.splitlines() if line.startswith("  - ")]
    assert lines[0] == "  - u_24 spent $8.40 today > $5.00"
    assert lines[19] == "  - u_05 spent $6.50 today > $5.00"
    # The five smallest, $6.00 + $6.10 + $6.20 + $6.30 + $6.40, summed.
    assert lines[20:] == ["  - and 5 more ($31.00)"]
    assert "u_04" not in message.body
    assert "u_low" not in message.body
    assert Notification.objects.count() == 1
    # Running the pass again (or concurrently: the insert is the claim) announces nothing more.
    assert rules_evaluate(now=now + timedelta(seconds=1)) == {"open": 1}
    assert len(mail.outbox) == 1


def test_per_user_error_rate_respects_min_requests(key):
    now = datetime.now(tz=UTC).replace(microsecond=0)
    events = [
        {
            "request_id": f"e{i}",
            "model": "claude-haiku-4-5",
            "latency_ms": 10,
            "input_tokens": 10,
            "user_id": "u_busy" if i < 20 else "u_quiet",
            "status": "error" if i % 2 else "ok",
            "timestamp": (now - timedelta(seconds=i + 1)).isoformat(),
        }
        for i in range(24)
    ]
    assert ingest(key, events).accepted == 24
    rollup_until_current()
    per_rule(key, name="Per-user errors", metric="error_rate", threshold=0.2, min_requests=10)
    assert rules_evaluate(now=now) == {"opened": 1}
    # u_quiet also has 50% errors, but over 4 calls only.
    assert list(Incident.objects.values_list("dimension_value", "value")) == [("u_busy", 0.5)]
    assert mail.outbox[0].subject == "[Tally] acme: u_busy: error rate 50.0% today > 20.0%"


def api(key_secret: str, method: str, path: str, body=None):  # type: ignore[no-untyped-def]
    return getattr(Client(), method)(
        path,
        data=json.dumps(body) if body is not None else None,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key_secret}",
    )


RULE = {
    "name": "Per-user spend",
    "metric": "cost_usd",
    "window": "day",
    "condition": "above",
    "threshold": 5.0,
    "recipients": ["oncall@example.com"],
    "per": "user_id",
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"per": "region"}, "Select a valid choice"),
        ({"metric": "latency_p95_ms"}, "per user_id can judge cost_usd, requests, error_rate only"),
        ({"window": "hour"}, "per user_id is judged per UTC day: the window must be day, not hour"),
        ({"service": "checkout"}, "per user_id can be scoped to an environment only"),
        ({"condition": "anomaly", "threshold": None}, "takes a threshold (above / below), not anomaly"),
        ({"per": "service", "service": "checkout"}, "a rule per service cannot also be scoped to one service"),
        ({"per": "model", "metric": "coverage"}, "coverage is the provider's figure for the whole project"),
    ],
)
def test_rules_that_cannot_be_judged_per_value_get_a_400_naming_per(db, changes, message):
    secret = ingest_key_create(project_slug="acme", environment_name="prod", scope="admin").secret
    resp = api(secret, "post", "/api/v1/alert-rules", {**RULE, **changes})
    assert resp.status_code == 400, resp.content
    errors = resp.json()["errors"]
    assert [e["field"] for e in errors] == ["per"]
    assert message in errors[0]["message"]
    assert AlertRule.objects.count() == 0


def test_per_is_saved_read_and_cleared_through_the_api(db):
    secret = ingest_key_create(project_slug="acme", environment_name="prod", scope="admin").secret
    created = api(secret, "post", "/api/v1/alert-rules", {**RULE, "environment": "prod"})
    assert created.status_code == 201, created.content
    assert created.json()["per"] == "user_id"
    rule_id = created.json()["id"]
    per_service = api(
        secret,
        "patch",
        f"/api/v1/alert-rules/{rule_id}",
        {"per": "service", "window": "hour", "metric": "latency_p95_ms"},
    )
    assert per_service.status_code == 200, per_service.content
    assert (per_service.json()["per"], per_service.json()["window"]) == ("service", "hour")
    cleared = api(secret, "patch", f"/api/v1/alert-rules/{rule_id}", {"per": None})
    assert cleared.json()["per"] is None
    assert AlertRule.objects.get().per is None
    assert api(secret, "post", "/api/v1/alert-rules", {**RULE, "per": 5}).json()["errors"] == [
        {"field": "per", "message": "must be a str"}
    ]


FORM = {
    "name": "Any single user over $5 a day",
    "metric": "cost_usd",
    "window": "day",
    "condition": "above",
    "threshold": "5",
    "sensitivity": "",
    "environment": "",
    "service": "",
    "model": "",
    "per": "user_id",
    "recipients": "oncall@example.com",
    "cooldown_minutes": "60",
    "min_requests": "20",
    "enabled": "true",
}


def test_the_form_saves_per_and_the_pages_show_it_with_each_value(key, django_user_model):
    from projects.models import Membership

    user = django_user_model.objects.create_user("ada", "ada@example.com", "alerts-test-pass-42")
    Membership.objects.create(user=user, project=key.project, role="admin")
    admin = Client()
    admin.force_login(user)
    form = admin.get("/alerts/new?project=acme").content.decode()
    assert '<option value="user_id">each user</option>' in form
    assert '<option value="" selected>nothing: the whole scope as one</option>' in form
    bad = admin.post("/alerts/new?project=acme", {**FORM, "window": "hour"})
    assert bad.status_code == 200
    assert 'data-error-for="per"' in bad.content.decode()
    assert admin.post("/alerts/new?project=acme", FORM).status_code == 302
    rule = AlertRule.objects.get()
    assert rule.per == "user_id"
    edit = admin.get(f"/alerts/{rule.pk}/edit").content.decode()
    assert '<option value="user_id" selected>each user</option>' in edit

    now = datetime.now(tz=UTC).replace(microsecond=0)
    spend(key, "a-", user_id="u_a", dimes=60, when=now)
    spend(key, "b-", user_id="u_b", dimes=70, when=now)
    rollup_until_current()
    assert rules_evaluate(now=now) == {"opened": 1}
    listing = admin.get("/alerts/?project=acme").content.decode()
    assert "whole project · per user" in listing
    assert "firing · 2 users" in listing
    history = admin.get(f"/alerts/{rule.pk}/").content.decode()
    assert '<dd data-per="user_id">user' in history
    assert '<td class="mono" data-value>u_a</td>' in history
    assert '<td class="mono" data-value>u_b</td>' in history
    # Both incidents link to the one message of their pass.
    notification = Notification.objects.get(kind=Notification.Kind.INCIDENT_OPENED)  # besides the new-model notice
    assert history.count(f'href="/alerts/outbox/{notification.pk}/"') == 2
    assert "user=u_a" in history


def test_a_user_is_summed_across_environments_when_the_rule_names_none(key):
    """Two environments: a user's day is two rows. $2.60 + $2.60 breaches $5 though neither row
    does; $2.00 + $2.00 does not."""
    now = datetime.now(tz=UTC).replace(microsecond=0)
    staging = ingest_key_create(project_slug="acme", environment_name="staging").key
    for env_key, prefix in ((key, "p"), (staging, "s")):
        spend(env_key, f"{prefix}split-", user_id="u_split", dimes=26, calls=2, when=now)
        spend(env_key, f"{prefix}half-", user_id="u_half", dimes=20, when=now)
    rollup_until_current()
    per_rule(key)
    assert rules_evaluate(now=now) == {"opened": 1}
    assert list(Incident.objects.values_list("dimension_value", "value")) == [("u_split", pytest.approx(5.2))]
    assert Incident.objects.get().detail["window_requests"] == 4
    assert mail.outbox[0].subject == "[Tally] acme: u_split spent $5.20 today > $5.00"


def test_charts_draw_no_per_rule_threshold_on_a_total(key):
    """$5 per user is not a line on the project's total spend: charts leave per rules out."""
    from alerts.selectors import chart_alerts

    whole = per_rule(key, name="Project spend", per=None, threshold=50.0)
    per_rule(key)
    now = datetime.now(tz=UTC)
    drawn = chart_alerts(project_id=key.project_id, start=now - timedelta(days=7), end=now, now=now)
    assert [r.rule for r in drawn.rules] == [whole]


def _many_breaching(key, users: int = 25) -> datetime:  # type: ignore[no-untyped-def]
    now = datetime.now(tz=UTC).replace(microsecond=0)
    for n in range(users):
        spend(key, f"u{n}-", user_id=f"u_{n:02d}", dimes=60 + n, when=now)
    rollup_until_current()
    return now


def test_two_evaluators_racing_open_each_value_once_and_send_one_message(key):
    import threading

    from django.db import connection

    from alerts.services import rule_evaluate

    now = _many_breaching(key)
    rule = per_rule(key)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def evaluate() -> None:
        try:
            barrier.wait()
            outcomes.append(rule_evaluate(rule=AlertRule.objects.get(pk=rule.pk), now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One opened them all; the other found them open (or, having looked before they committed, none).
    assert sorted(outcomes) in (["ok", "opened"], ["open", "opened"])
    assert Incident.objects.filter(resolved_at__isnull=True).count() == 25
    assert Notification.objects.count() == 1
    assert len(mail.outbox) == 1


def test_a_pass_that_fails_midway_leaves_nothing_half_done(key, monkeypatch):
    """Incidents and their message are one transaction: a failure while queueing the message
    rolls the incidents back, so the next pass opens and announces them all."""
    from alerts import formatting

    now = _many_breaching(key, users=3)
    per_rule(key)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("template exploded")

    with monkeypatch.context() as patched:
        patched.setattr(formatting, "per_context", broken)
        assert rules_evaluate(now=now) == {"error": 1}
    assert Incident.objects.count() == 0
    assert Notification.objects.count() == 0
    assert rules_evaluate(now=now + timedelta(seconds=1)) == {"opened": 1}
    assert Incident.objects.count() == 3
    assert mail.outbox[0].subject == "[Tally] acme: 3 users over $5.00 spend (top: u_02 $6.20 today)"


def test_calls_without_the_dimension_are_nobodys_value(key):
    """Per feature: untagged calls ($9 here) are not a feature; the tagged one over $1 is."""
    now = datetime.now(tz=UTC).replace(microsecond=0)
    events = [
        {
            "request_id": f"f{i}",
            "model": "claude-haiku-4-5",
            "latency_ms": 10,
            "input_tokens": 1_000_000,
            "feature": "summarize" if i < 2 else None,
            "timestamp": (now - timedelta(seconds=i + 1)).isoformat(),
        }
        for i in range(11)
    ]
    assert ingest(key, events).accepted == 11
    rollup_until_current()
    per_rule(key, name="Per-feature spend", per="feature", threshold=1.0)
    assert rules_evaluate(now=now) == {"opened": 1}
    assert list(Incident.objects.values_list("dimension_value", "value")) == [("summarize", pytest.approx(2.0))]
    assert mail.outbox[0].subject == "[Tally] acme: feature summarize: spend $2.00 today > $1.00"


def test_switching_per_off_closes_the_values_incidents_quietly(key):
    now = _many_breaching(key, users=2)
    rule = per_rule(key, cooldown_minutes=0)  # every opening below is announced
    assert rules_evaluate(now=now) == {"opened": 1}
    AlertRule.objects.filter(pk=rule.pk).update(per=None, threshold=100.0)
    assert rules_evaluate(now=now + timedelta(seconds=1)) == {"ok": 1}
    assert Incident.objects.filter(resolved_at__isnull=True).count() == 0
    AlertRule.objects.filter(pk=rule.pk).update(threshold=5.0)  # the project's $12.10 breaches as a whole
    assert rules_evaluate(now=now + timedelta(seconds=2)) == {"opened": 1}
    AlertRule.objects.filter(pk=rule.pk).update(per="user_id", threshold=6.05)  # u_01 $6.10 only
    assert rules_evaluate(now=now + timedelta(seconds=3)) == {"opened": 1}
    assert list(Incident.objects.filter(resolved_at__isnull=True).values_list("dimension_value", flat=True)) == ["u_01"]
    assert [m.subject for m in mail.outbox] == [
        "[Tally] acme: 2 users over $5.00 spend (top: u_01 $6.10 today)",
        "[Tally] acme: spend $12.10 > $5.00",
        "[Tally] acme: u_01 spent $6.10 today > $6.05",
    ]
