"""The alerts pages (/alerts/): members read, project admins change, viewers get 403 and change nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import Client
from django.utils import timezone

from alerts.models import AlertRule, Budget, DigestSubscription, Incident, Notification
from projects.models import Membership
from projects.services import ingest_key_create, project_get_or_create

PASSWORD = "alerts-test-pass-42"
VALID_RULE = {
    "name": "Prod spend per hour",
    "metric": "cost_usd",
    "window": "hour",
    "condition": "above",
    "threshold": "25",
    "sensitivity": "",
    "environment": "prod",
    "service": "",
    "model": "",
    "recipients": "oncall@example.com, finance@example.com",
    "cooldown_minutes": "60",
    "min_requests": "20",
    "enabled": ["false", "true"],
}


def member(django_user_model, project, name: str, role: str):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user(name, f"{name}@example.com", PASSWORD)
    Membership.objects.create(user=user, project=project, role=role)
    return user


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin(project, django_user_model):  # type: ignore[no-untyped-def]
    """A project admin who is not a superuser."""
    return client_for(member(django_user_model, project, "ada", "admin"))


@pytest.fixture
def viewer(project, django_user_model):  # type: ignore[no-untyped-def]
    return client_for(member(django_user_model, project, "vic", "viewer"))


@pytest.fixture
def rule(project):  # type: ignore[no-untyped-def]
    return AlertRule.objects.create(
        project=project,
        name="Error spike",
        metric="error_rate",
        window="hour",
        condition="above",
        threshold=0.05,
        recipients=["oncall@example.com"],
    )


@pytest.fixture
def budget(project):  # type: ignore[no-untyped-def]
    return Budget.objects.create(
        project=project, name="Monthly cap", period="month", limit_usd=Decimal(500), recipients=["finance@example.com"]
    )


@pytest.fixture
def failed_email(project):  # type: ignore[no-untyped-def]
    return Notification.objects.create(
        project=project,
        kind=Notification.Kind.BUDGET,
        dedupe_key="budget:1:2025-01-01:100",
        recipients=["finance@example.com"],
        subject="[Tally] acme: Monthly cap at 100%",
        body_text="Spent $510.00 of $500.00 <monthly>",
        body_html='<p onclick="x()">Spent <b>$510.00</b></p>',
        next_attempt_at=timezone.now(),
        attempts=8,
        failed_at=timezone.now(),
        last_error="SMTPServerDisconnected: Connection unexpectedly closed",
    )


def pages(rule, failed_email) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        "/alerts/",
        f"/alerts/{rule.pk}/",
        "/alerts/budgets/",
        "/alerts/digest/",
        "/alerts/outbox/",
        f"/alerts/outbox/{failed_email.pk}/",
    ]


def write_urls(rule, budget) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every URL that changes something, with the methods that reach it."""
    return [
        ("get", "/alerts/new?project=acme"),
        ("post", "/alerts/new?project=acme"),
        ("get", f"/alerts/{rule.pk}/edit"),
        ("post", f"/alerts/{rule.pk}/edit"),
        ("post", f"/alerts/{rule.pk}/enabled"),
        ("get", f"/alerts/{rule.pk}/delete"),
        ("post", f"/alerts/{rule.pk}/delete"),
        ("post", "/alerts/budgets/?project=acme"),
        ("get", f"/alerts/budgets/{budget.pk}/delete"),
        ("post", f"/alerts/budgets/{budget.pk}/delete"),
        ("post", "/alerts/digest/?project=acme"),
    ]


def field_errors(response) -> set[str]:  # type: ignore[no-untyped-def]
    return set(re.findall(r'data-error-for="([a-z_]+)"', response.content.decode()))


def state(project) -> tuple:  # type: ignore[no-untyped-def]
    return (
        list(AlertRule.objects.filter(project=project).values()),
        list(Budget.objects.values()),
        list(DigestSubscription.objects.values()),
    )


# --- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "viewer"])
def test_every_page_is_200_for_members(request, who, rule, failed_email):
    client = request.getfixturevalue(who)
    for url in pages(rule, failed_email):
        response = client.get(url)
        assert response.status_code == 200, url
        # CSP script-src 'self': no inline script, no event handler attributes of ours.
        assert not re.search(rb"<script(?![^>]*\bsrc=)", response.content), url
        assert b"Error spike" in response.content or url.startswith(
            ("/alerts/budgets", "/alerts/digest", "/alerts/outbox")
        )


def test_anonymous_visitors_are_sent_to_login(db, rule, budget, failed_email):
    login = resolve_url(settings.LOGIN_URL)
    for method, url in [("get", u) for u in pages(rule, failed_email)] + write_urls(rule, budget):
        response = getattr(Client(), method)(url)
        assert response.status_code == 302, (method, url)
        assert response["Location"].startswith(f"{login}?next="), (method, url)


def test_the_rules_list_shows_each_rule_and_its_state(admin, project, rule):
    Incident.objects.create(
        rule=rule,
        window_start=timezone.now().replace(minute=0, second=0, microsecond=0),
        opened_at=timezone.now(),
        value=0.2,
        threshold=0.05,
    )
    quiet = AlertRule.objects.create(
        project=project,
        name="Slow",
        metric="latency_p95_ms",
        window="day",
        condition="anomaly",
        sensitivity=4,
        service="search",
        model="claude-haiku-4-5",
        recipients=["a@example.com"],
        enabled=False,
    )
    html = admin.get("/alerts/?project=acme").content.decode()
    error_row = html[html.index(f'data-rule="{rule.pk}"') : html.index(f'data-rule="{quiet.pk}"')]
    slow_row = html[html.index(f'data-rule="{quiet.pk}"') :]
    assert "firing" in error_row
    assert "5.0%" in error_row  # threshold 0.05 of a rate
    assert "env prod" not in error_row
    assert "whole project" in error_row
    assert "4 σ" in slow_row
    assert "service search · model claude-haiku-4-5" in slow_row
    assert "never" in slow_row  # last evaluated
    assert 'badge-off">off' in slow_row


def test_viewer_sees_the_list_without_any_button_that_changes_it(viewer, rule):
    html = viewer.get("/alerts/").content.decode()
    assert "Error spike" in html
    assert "New rule" not in html
    assert "/edit" not in html
    assert "/delete" not in html
    assert "/enabled" not in html
    assert "view only" in html
    budgets = viewer.get("/alerts/budgets/").content.decode()
    assert 'data-form="budget"' not in budgets
    assert 'data-form="digest"' not in viewer.get("/alerts/digest/").content.decode()


def test_admin_sees_the_buttons(admin, rule):
    html = admin.get("/alerts/").content.decode()
    assert 'href="/alerts/new?project=acme"' in html
    assert f"/alerts/{rule.pk}/edit" in html
    assert f"/alerts/{rule.pk}/delete" in html


def test_viewer_gets_403_on_every_write_url_and_nothing_changes(viewer, project, rule, budget):
    before = state(project)
    for method, url in write_urls(rule, budget):
        data = {**VALID_RULE, "limit_usd": "1", "period": "day"} if method == "post" else None
        response = getattr(viewer, method)(url, data)
        assert response.status_code == 403, (method, url)
    assert state(project) == before


def test_a_project_admin_is_only_a_viewer_elsewhere(admin, django_user_model):
    other = project_get_or_create(slug="globex")
    ada = django_user_model.objects.get(username="ada")
    Membership.objects.create(user=ada, project=other, role="viewer")
    assert admin.get("/alerts/new?project=acme").status_code == 200
    assert admin.get("/alerts/new?project=globex").status_code == 403
    assert admin.post("/alerts/new?project=globex", VALID_RULE).status_code == 403
    assert not AlertRule.objects.filter(project=other).exists()
    html = admin.get("/alerts/?project=globex").content.decode()
    assert "New rule" not in html
    assert '<option value="globex" selected>' in html  # the project selector lists both


def test_outsiders_see_nothing_of_a_project(project, rule, failed_email, django_user_model):
    stranger = client_for(django_user_model.objects.create_user("eve", "eve@example.com", PASSWORD))
    html = stranger.get("/alerts/?project=acme").content.decode()
    assert "No project to show" in html
    assert "Error spike" not in html
    assert stranger.get(f"/alerts/{rule.pk}/").status_code == 404
    assert stranger.get(f"/alerts/outbox/{failed_email.pk}/").status_code == 404
    assert stranger.get("/alerts/new?project=acme").status_code == 404
    assert stranger.post(f"/alerts/{rule.pk}/delete").status_code == 404
    assert AlertRule.objects.filter(pk=rule.pk).exists()


def test_a_superuser_administers_every_project(project, django_user_model):
    root = client_for(django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD))
    response = root.post("/alerts/new?project=acme", VALID_RULE)
    assert response.status_code == 302
    assert AlertRule.objects.get().project == project


# --- rules ---------------------------------------------------------------------------------


def test_admin_creates_a_rule_with_the_form(admin, project):
    assert b'name="threshold"' in admin.get("/alerts/new?project=acme").content
    response = admin.post("/alerts/new?project=acme", VALID_RULE)
    assert response.status_code == 302
    assert response["Location"] == "/alerts/?project=acme"
    rule = AlertRule.objects.get()
    assert (rule.project, rule.name, rule.metric, rule.window, rule.condition, rule.threshold) == (
        project,
        "Prod spend per hour",
        "cost_usd",
        "hour",
        "above",
        25.0,
    )
    assert (rule.environment, rule.service, rule.model) == ("prod", None, None)
    assert rule.recipients == ["oncall@example.com", "finance@example.com"]
    assert rule.enabled is True
    assert "Prod spend per hour" in admin.get(response["Location"]).content.decode()


def test_an_invalid_rule_names_every_bad_field_and_saves_nothing(admin):
    bad = {
        **VALID_RULE,
        "name": "",
        "metric": "p50",
        "window": "week",
        "threshold": "",
        "recipients": "oncall@example.com, not-an-email",
        "cooldown_minutes": "-5",
        "min_requests": "many",
    }
    response = admin.post("/alerts/new?project=acme", bad)
    assert response.status_code == 200
    assert field_errors(response) == {
        "name",
        "metric",
        "window",
        "threshold",
        "recipients",
        "cooldown_minutes",
        "min_requests",
    }
    html = response.content.decode()
    assert "Nothing was saved" in html
    assert "&#x27;not-an-email&#x27; is not a valid email address" in html
    assert 'value="oncall@example.com, not-an-email"' in html  # what was typed stays in the form
    assert AlertRule.objects.count() == 0


def test_condition_specific_fields_are_checked(admin):
    anomaly_with_threshold = {**VALID_RULE, "condition": "anomaly", "sensitivity": "50"}
    response = admin.post("/alerts/new?project=acme", anomaly_with_threshold)
    assert field_errors(response) == {"threshold", "sensitivity"}
    rate_as_percent = {**VALID_RULE, "metric": "error_rate", "threshold": "5"}
    assert field_errors(admin.post("/alerts/new?project=acme", rate_as_percent)) == {"threshold"}
    assert AlertRule.objects.count() == 0


def test_admin_edits_a_rule_and_can_untick_enabled(admin, rule):
    form = admin.get(f"/alerts/{rule.pk}/edit").content.decode()
    assert 'value="Error spike"' in form
    assert re.search(r'type="checkbox"[^>]*name="enabled"[^>]*checked', form)
    changed = {
        **VALID_RULE,
        "name": "Error spike (prod)",
        "metric": "error_rate",
        "threshold": "0.1",
        "enabled": "false",
    }  # the box unticked: only the hidden "false" is sent
    response = admin.post(f"/alerts/{rule.pk}/edit", changed)
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.name, rule.threshold, rule.enabled) == ("Error spike (prod)", 0.1, False)


def test_an_invalid_edit_changes_nothing(admin, rule):
    response = admin.post(f"/alerts/{rule.pk}/edit", {**VALID_RULE, "name": "Renamed", "threshold": "-1"})
    assert field_errors(response) == {"threshold"}
    rule.refresh_from_db()
    assert (rule.name, rule.threshold) == ("Error spike", 0.05)


def test_admin_disables_enables_and_deletes_a_rule(admin, rule):
    assert admin.post(f"/alerts/{rule.pk}/enabled", {"enabled": "false"}).status_code == 302
    assert AlertRule.objects.get().enabled is False
    # The same submit twice leaves it off: the form says which state, it is not a flip.
    admin.post(f"/alerts/{rule.pk}/enabled", {"enabled": "false"})
    assert AlertRule.objects.get().enabled is False
    admin.post(f"/alerts/{rule.pk}/enabled", {"enabled": "true"})
    assert AlertRule.objects.get().enabled is True
    assert b"Delete the rule" in admin.get(f"/alerts/{rule.pk}/delete").content
    assert AlertRule.objects.count() == 1  # GET only asks
    response = admin.post(f"/alerts/{rule.pk}/delete")
    assert (response.status_code, response["Location"]) == (302, "/alerts/?project=acme")
    assert AlertRule.objects.count() == 0


def test_rule_history_shows_each_incident(viewer, rule):
    start = datetime(2025, 3, 4, 10, tzinfo=UTC)
    resolved = Incident.objects.create(
        rule=rule,
        window_start=start,
        opened_at=start + timedelta(hours=1, minutes=2),
        resolved_at=start + timedelta(hours=3, minutes=32),
        value=0.125,
        threshold=0.05,
        notified=True,
        detail={
            "contributors": [
                {"dimension": "model", "value": "claude-haiku-4-5", "now": 0.1, "before": 0.01, "change": 0.09}
            ]
        },
    )
    Notification.objects.create(
        project=rule.project,
        kind="incident_opened",
        incident=resolved,
        dedupe_key=f"incident:{resolved.pk}:opened",
        recipients=rule.recipients,
        subject="fired",
        body_text="t",
        body_html="h",
        next_attempt_at=timezone.now(),
        sent_at=timezone.now(),
    )
    Incident.objects.create(
        rule=rule,
        window_start=start + timedelta(hours=4),
        opened_at=start + timedelta(hours=5),
        value=0.08,
        threshold=0.05,
        notified=False,
        detail={"contributors": []},
    )
    html = viewer.get(f"/alerts/{rule.pk}/").content.decode()
    first = html[html.index(f'data-incident="{resolved.pk}"') :]
    assert "Mar 4, 10:00 – 12:00" in first  # the windows that breached (see below)
    assert "2 h 30 min" in first
    assert "12.5%" in first
    assert "threshold 5.0%" in first
    assert "claude-haiku-4-5" in first
    # An incident stored before shares existed still shows its change.
    assert '10.0% <span class="subtle">(1.0% a day earlier, +9.0%)</span>' in first
    # Resolved at 13:32: the 12:00 window was fine, so the breach was 10:00-12:00.
    assert (
        'href="/errors?project=acme&amp;from=2025-03-04T10:00:00Z&amp;to=2025-03-04T12:00:00Z" data-link="dashboard"'
    ) in first
    assert (
        'href="/events?project=acme&amp;from=2025-03-04T10:00:00Z&amp;to=2025-03-04T12:00:00Z&amp;status=error" '
        'data-link="calls"'
    ) in first
    assert "notified · sent" in first
    assert "suppressed by cooldown" in html
    assert "so far" in html  # the open one
    assert html.index("Mar 4, 14:00") < html.index("Mar 4, 10:00")  # newest first


def test_anomaly_incidents_show_their_baseline(viewer, project):
    rule = AlertRule.objects.create(
        project=project,
        name="Spend anomaly",
        metric="cost_usd",
        window="day",
        condition="anomaly",
        sensitivity=3,
        recipients=["a@example.com"],
    )
    Incident.objects.create(
        rule=rule,
        window_start=datetime(2025, 3, 4, tzinfo=UTC),
        opened_at=datetime(2025, 3, 5, 0, 5, tzinfo=UTC),
        value=90,
        baseline=12.5,
    )
    html = viewer.get(f"/alerts/{rule.pk}/").content.decode()
    assert "baseline $12.50" in html
    assert "$90.00" in html


# --- budgets and digest ----------------------------------------------------------------------


def test_admin_adds_and_deletes_a_budget(admin, project):
    response = admin.post(
        "/alerts/budgets/?project=acme",
        {
            "name": "Daily cap",
            "period": "day",
            "limit_usd": "10",
            "environment": "prod",
            "service": "",
            "user_id": "",
            "recipients": "finance@example.com",
            "enabled": ["false", "true"],
        },
    )
    assert (response.status_code, response["Location"]) == (302, "/alerts/budgets/?project=acme")
    budget = Budget.objects.get()
    assert (budget.project, budget.limit_usd, budget.environment, budget.recipients, budget.enabled) == (
        project,
        Decimal(10),
        "prod",
        ["finance@example.com"],
        True,
    )
    html = admin.get("/alerts/budgets/").content.decode()
    assert "Daily cap" in html
    assert "$10.00" in html
    assert "env prod" in html
    assert admin.post(f"/alerts/budgets/{budget.pk}/delete").status_code == 302
    assert Budget.objects.count() == 0


def test_an_invalid_budget_names_every_bad_field_and_saves_nothing(admin):
    response = admin.post(
        "/alerts/budgets/?project=acme",
        {"name": "", "period": "week", "limit_usd": "0", "recipients": "finance@", "enabled": "false"},
    )
    assert response.status_code == 200
    assert field_errors(response) == {"name", "period", "limit_usd", "recipients"}
    assert Budget.objects.count() == 0


@pytest.mark.usefixtures("clean_events")
def test_budgets_show_spent_projected_and_exceeded(transactional_db, django_user_model):
    from tests.rollups.helpers import spend_dollars

    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    client = client_for(member(django_user_model, key.project, "vic", "viewer"))
    Budget.objects.create(project=key.project, name="Tight", period="day", limit_usd=Decimal(10))
    Budget.objects.create(project=key.project, name="Roomy", period="month", limit_usd=Decimal(1000))
    Budget.objects.create(project=key.project, name="Paused", period="day", limit_usd=Decimal(1), enabled=False)
    now = datetime.now(tz=UTC)
    spend_dollars(key, 11, when=now)  # $11
    html = client.get("/alerts/budgets/").content.decode()
    rows = {name: html[html.index(f'<td class="strong">{name}</td>') :][:1500] for name in ("Tight", "Roomy", "Paused")}
    assert "$11.00" in rows["Tight"]
    assert "exceeded" in rows["Tight"]
    assert "110%" in rows["Tight"]
    assert "$11.00" in rows["Roomy"]
    assert "$1,000.00" in rows["Roomy"]  # to the cent, thousands separated
    assert "within" in rows["Roomy"]
    assert "disabled" in rows["Paused"]


def test_admin_switches_the_digest_on_and_off(admin, project):
    page = admin.get("/alerts/digest/").content.decode()
    assert "not set up for this project" in page
    response = admin.post(
        "/alerts/digest/?project=acme", {"enabled": ["false", "true"], "recipients": "team@example.com"}
    )
    assert response.status_code == 302
    sub = DigestSubscription.objects.get()
    assert (sub.project, sub.enabled, sub.recipients) == (project, True, ["team@example.com"])
    assert "sent to team@example.com" in admin.get("/alerts/digest/").content.decode()
    admin.post("/alerts/digest/?project=acme", {"enabled": "false", "recipients": "team@example.com"})
    sub = DigestSubscription.objects.get()  # still one row: saving updates it
    assert (sub.enabled, sub.recipients) == (False, ["team@example.com"])


def test_an_invalid_digest_form_saves_nothing(admin):
    response = admin.post("/alerts/digest/?project=acme", {"enabled": ["false", "true"], "recipients": "nobody"})
    assert field_errors(response) == {"recipients"}
    assert DigestSubscription.objects.count() == 0


# --- outbox ----------------------------------------------------------------------------------


def test_outbox_flags_a_failed_email_and_shows_its_error(viewer, failed_email, project):
    Notification.objects.create(
        project=project,
        kind="digest",
        dedupe_key="digest:1:2025-01-01",
        recipients=["team@example.com"],
        subject="[Tally] acme: daily digest",
        body_text="t",
        body_html="h",
        next_attempt_at=timezone.now(),
        attempts=1,
        sent_at=timezone.now(),
    )
    html = viewer.get("/alerts/outbox/").content.decode()
    row = html[html.index(f'data-notification="{failed_email.pk}"') :]
    row = row[: row.index("</tr>")]
    assert 'class="status-failed"' in html
    assert 'badge-bad">failed' in row
    assert "SMTPServerDisconnected: Connection unexpectedly closed" in row
    assert "1 notification failed for good" in html
    assert "daily digest" in html
    assert 'badge-ok">sent' in html


def test_an_email_shows_its_text_and_a_sandboxed_html_body(viewer, failed_email):
    html = viewer.get(f"/alerts/outbox/{failed_email.pk}/").content.decode()
    assert "Spent $510.00 of $500.00 &lt;monthly&gt;" in html
    assert "SMTPServerDisconnected: Connection unexpectedly closed" in html
    iframe = re.search(r"<iframe[^>]*>", html).group(0)
    assert 'sandbox=""' in iframe
    # The HTML body only ever appears escaped: as the srcdoc attribute and as source text.
    assert 'srcdoc="&lt;p onclick=&quot;x()&quot;&gt;Spent &lt;b&gt;$510.00&lt;/b&gt;&lt;/p&gt;"' in iframe
    assert "<p onclick" not in html


def test_the_outbox_says_where_mail_is_kept_without_email_url(viewer, failed_email, settings, tmp_path):
    assert b"Mail is kept in" not in viewer.get("/alerts/outbox/").content
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    html = viewer.get("/alerts/outbox/").content.decode()
    assert f"Mail is kept in <code>{tmp_path / 'mail'}</code> (no EMAIL_URL set)" in html
