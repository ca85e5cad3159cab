"""Two projects with data in each, their members and keys, and one of every per-project object,
for the access tests. Project B's data carries marker strings that appear nowhere in A's, so a
response can be searched for any sign of B."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.dashboard.conftest import browser_page, chromium_path, seeded, viewer_user

# The dashboard's browser and data fixtures, imported (not copied): pytest registers them here too.
__all__ = ["browser_page", "chromium_path", "seeded", "viewer_user"]

PASSWORD = "projects-test-pass-42"
# Strings only project B's data contains. Not its slug nor its request ids: pages echo what the
# user typed ("No project 'bravo'...", "No stored call has request ID ..."), which leaks nothing.
B_MARKERS = (
    "Bravo Industries",
    "bravo-secret-model",
    "bravo-svc",
    "bravo-user-7",
    "bravo-override-x",
    "bravo_boss",
    "bravo_watcher",
    "Bravo rule",
    "Bravo budget",
    "Bravo mail",
    "bravo-ops@example.com",
)


@dataclass
class Side:
    """One project and everything in it that a URL can name."""

    project: Any
    admin: Any  # a user with role admin
    viewer: Any  # a user with role viewer
    keys: dict[str, str] = field(default_factory=dict)  # scope -> secret
    key_id: int = 0
    event_id: int = 0
    override_id: int = 0
    membership_id: int = 0  # the viewer's membership (a change to it would show)
    rule_id: int = 0
    budget_id: int = 0
    notification_id: int = 0


@dataclass
class World:
    a: Side
    b: Side
    nobody: Any  # logged in, member of nothing
    superuser: Any


def _side(prefix: str, name: str, marker: str, users: Any) -> Side:
    from alerts.models import AlertRule, Budget, DigestSubscription, Notification
    from ingest.models import Event
    from ingest.services import events_ingest
    from pricing.models import PriceOverride
    from projects.models import Membership
    from projects.services import ingest_key_create, project_get_or_create
    from providers.models import ProviderConnection
    from providers.services import provider_connection_set

    project = project_get_or_create(slug=prefix, name=name)
    admin = users.objects.create_user(f"{prefix}_boss", f"{prefix}-boss@example.com", PASSWORD)
    viewer = users.objects.create_user(f"{prefix}_watcher", f"{prefix}-watcher@example.com", PASSWORD)
    Membership.objects.create(user=admin, project=project, role=Membership.Role.ADMIN)
    side = Side(
        project=project,
        admin=admin,
        viewer=viewer,
        membership_id=Membership.objects.create(user=viewer, project=project, role="viewer").pk,
    )
    for scope in ("ingest", "read", "admin"):
        created = ingest_key_create(project_slug=prefix, environment_name="prod", scope=scope, name=f"{prefix} {scope}")
        side.keys[scope] = created.secret
        if scope == "ingest":
            side.key_id = created.key.pk
    key = ingest_key_create(project_slug=prefix, environment_name="prod").key
    now = datetime.now(tz=UTC).replace(microsecond=0)
    events = [
        {
            "request_id": f"{marker}-req-{i}",
            "model": f"{marker}-secret-model",
            "service": f"{marker}-svc",
            "user_id": f"{marker}-user-7",
            "latency_ms": 100 + i,
            "input_tokens": 1000,
            "output_tokens": 50,
            "timestamp": (now - timedelta(hours=i + 1)).isoformat(),
        }
        for i in range(3)
    ]
    result = events_ingest(
        project_id=project.pk, environment_id=key.environment_id, body={"events": events}, max_batch=1000
    )
    assert result.accepted == 3, result.rejected
    side.event_id = Event.objects.filter(project_id=project.pk).order_by("id").values_list("id", flat=True).first()
    side.override_id = PriceOverride.objects.create(
        project=project,
        model=f"{marker}-override-x",
        effective_from=now - timedelta(days=1),
        input_usd_per_mtok=Decimal(1),
        output_usd_per_mtok=Decimal(2),
    ).pk
    rule = AlertRule.objects.create(
        project=project,
        name=f"{marker.title()} rule",
        metric="cost_usd",
        window="hour",
        condition="above",
        threshold=5.0,
        recipients=[f"{marker}-ops@example.com"],
    )
    side.rule_id = rule.pk
    side.budget_id = Budget.objects.create(
        project=project,
        name=f"{marker.title()} budget",
        period="month",
        limit_usd=Decimal(100),
        recipients=[f"{marker}-ops@example.com"],
    ).pk
    DigestSubscription.objects.create(project=project, recipients=[f"{marker}-ops@example.com"])
    # A provider connection whose figures cover the last week, so /reconciliation shows the
    # project's own models and /api/v1/provider-connection its scope (a marker).
    connection = provider_connection_set(
        project=project, admin_key=f"sk-ant-admin01-{marker}-key", api_key_ids=[], workspace_ids=[f"{marker}-svc"]
    )
    ProviderConnection.objects.filter(pk=connection.pk).update(
        covered_from=now.date() - timedelta(days=6), covered_to=now.date()
    )
    side.notification_id = Notification.objects.create(
        project=project,
        kind="budget",
        dedupe_key=f"{marker}-1",
        recipients=[f"{marker}-ops@example.com"],
        subject=f"{marker.title()} mail",
        body_text=f"{marker.title()} mail",
        body_html=f"<p>{marker.title()} mail</p>",
        next_attempt_at=now,
    ).pk
    return side


@pytest.fixture
def world(transactional_db, clean_events, django_user_model):  # type: ignore[no-untyped-def]
    from rollups.services import rollup_until_current

    a = _side("alpha", "Alpha Works", "alpha", django_user_model)
    b = _side("bravo", "Bravo Industries", "bravo", django_user_model)
    rollup_until_current()
    nobody = django_user_model.objects.create_user("nobody", "nobody@example.com", PASSWORD)
    superuser = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    return World(a=a, b=b, nobody=nobody, superuser=superuser)


def project_state(project: Any) -> dict[str, Any]:
    """Everything a write to this project could change, to compare before and after."""
    from alerts.models import AlertRule, Budget, DigestSubscription, Notification
    from ingest.models import EventKey
    from pricing.models import PriceOverride
    from projects.models import IngestKey, Membership, Project
    from providers.models import ProviderConnection

    return {
        "retention": Project.objects.get(pk=project.pk).raw_retention_days,
        "keys": sorted(IngestKey.objects.filter(project=project).values_list("pk", "revoked_at", "scope")),
        "overrides": sorted(
            PriceOverride.objects.filter(project=project).values_list("pk", "model", "input_usd_per_mtok")
        ),
        "members": sorted(Membership.objects.filter(project=project).values_list("pk", "user_id", "role")),
        "rules": sorted(AlertRule.objects.filter(project=project).values_list("pk", "name", "threshold", "enabled")),
        "budgets": sorted(Budget.objects.filter(project=project).values_list("pk", "name", "limit_usd")),
        "digests": sorted(
            DigestSubscription.objects.filter(project=project).values_list("pk", "enabled", "recipients")
        ),
        "notifications": sorted(Notification.objects.filter(project=project).values_list("pk", "subject")),
        "events": EventKey.objects.filter(project_id=project.pk).count(),
        "provider": sorted(
            ProviderConnection.objects.filter(project=project).values_list(
                "admin_key_encrypted", "api_key_ids", "workspace_ids"
            )
        ),
    }
