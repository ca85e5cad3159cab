"""New-model and unpriced notices (issue 15 part 4): one each per model and project, to the
project's admins, even when ingest and the detecting passes run concurrently."""

from __future__ import annotations

import importlib
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection

from alerts.models import ModelNotice, Notification
from alerts.services import model_notices_check, rules_evaluate
from projects.models import Membership
from projects.services import ingest_key_create
from rollups.services import rollup_until_current

pytestmark = pytest.mark.usefixtures("clean_events")

UNKNOWN = "claude-future-9"  # no price anywhere: every call is unpriced
UNKNOWN_2 = "claude-future-10"


def ev(request_id: str, model: str, *, service: str = "checkout") -> dict:
    return {
        "request_id": request_id,
        "model": model,
        "latency_ms": 120,
        "input_tokens": 1000,
        "output_tokens": 50,
        "service": service,
        "timestamp": (datetime.now(tz=UTC) - timedelta(minutes=1)).isoformat(),
    }


@pytest.fixture
def project(transactional_db):  # type: ignore[no-untyped-def]
    key = ingest_key_create(project_slug="acme", environment_name="prod")
    users = get_user_model().objects
    Membership.objects.create(
        user=users.create_user("boss", email="boss@example.com"), project=key.key.project, role="admin"
    )
    Membership.objects.create(
        user=users.create_user("ann", email="ann@example.com"), project=key.key.project, role="viewer"
    )
    Membership.objects.create(user=users.create_user("nomail"), project=key.key.project, role="admin")
    return key


def post_concurrently(
    url: str, secret: str, model: str, *, threads: int = 6, per_thread: int = 20, prefix: str = "a"
) -> None:
    barrier = threading.Barrier(threads)
    accepted: list[int] = []

    def post(n: int) -> None:
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            resp = http.post(
                f"{url}/api/v1/events",
                headers={"Authorization": f"Bearer {secret}"},
                json={"events": [ev(f"{prefix}-{model}-{n}-{i}", model) for i in range(per_thread)]},
            )
            accepted.append(resp.json()["accepted"])

    workers = [threading.Thread(target=post, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sum(accepted) == threads * per_thread


def detect_concurrently(project_id: int, *, threads: int = 2) -> list[int]:
    """The detecting pass in `threads` threads at once, each on its own connection."""
    barrier = threading.Barrier(threads)
    queued: list[int] = []

    def run() -> None:
        try:
            barrier.wait()
            queued.append(model_notices_check(project_ids=[project_id]))
        finally:
            connection.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(queued) == threads
    return queued


def notices(model: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for notification in Notification.objects.filter(kind__in=["new_model", "unpriced_model"]):
        if f":{model}" == notification.dedupe_key[-len(model) - 1 :]:
            counts[notification.kind] = counts.get(notification.kind, 0) + 1
    return counts


def test_a_new_unpriced_model_notifies_the_admins_once_each_under_concurrent_ingest(live_server, project):
    post_concurrently(live_server.url, project.secret, UNKNOWN)
    rollup_until_current()
    assert sum(detect_concurrently(project.key.project_id)) == 2
    assert notices(UNKNOWN) == {"new_model": 1, "unpriced_model": 1}
    assert detect_concurrently(project.key.project_id) == [0, 0]  # run twice: nothing more
    new, unpriced = (Notification.objects.get(kind=kind) for kind in ("new_model", "unpriced_model"))
    assert new.recipients == unpriced.recipients == ["boss@example.com"]  # admins with an address only
    hour = datetime.now(tz=UTC) - timedelta(minutes=1)
    hour = hour.replace(minute=0, second=0, microsecond=0)
    assert new.subject == f"[Tally] acme: new model {UNKNOWN} first called by acme / prod / checkout"
    assert unpriced.subject == f"[Tally] acme: {UNKNOWN} has no price: its calls are unpriced"
    assert f"When: between {hour:%Y-%m-%d %H:%M} and {hour + timedelta(hours=1):%H:%M} UTC" in new.body_text
    assert "First call by: acme / prod / checkout (environment prod, service checkout)" in new.body_text
    assert "/projects/acme/prices" in unpriced.body_text
    assert "manage.py reprice" in unpriced.body_text
    assert sorted(m.subject for m in mail.outbox) == sorted([new.subject, unpriced.subject])
    row = ModelNotice.objects.get(model=UNKNOWN, kind="new_model")
    assert (row.first_hour, row.environment, row.service, row.baseline) == (hour, "prod", "checkout", False)

    # A second new model: one more of each. The first model again: nothing.
    post_concurrently(live_server.url, project.secret, UNKNOWN_2, threads=3, per_thread=5)
    post_concurrently(live_server.url, project.secret, UNKNOWN, threads=2, per_thread=5, prefix="b")
    rollup_until_current()
    rules_evaluate(project_ids=[project.key.project_id])  # the pass chained after each rollup
    assert notices(UNKNOWN_2) == {"new_model": 1, "unpriced_model": 1}
    assert notices(UNKNOWN) == {"new_model": 1, "unpriced_model": 1}
    assert Notification.objects.count() == 4


def test_a_priced_new_model_gets_no_unpriced_notice(project):
    from tests.rollups.helpers import ingest

    assert ingest(project.key, [ev("h1", "claude-haiku-4-5")]).accepted == 1
    rollup_until_current()
    assert model_notices_check(project_ids=[project.key.project_id]) == 1
    assert notices("claude-haiku-4-5") == {"new_model": 1}


def test_models_already_in_the_aggregates_at_upgrade_are_baselined_without_notices(project):
    from tests.rollups.helpers import ingest

    assert ingest(project.key, [ev("k1", "claude-haiku-4-5"), ev("k2", UNKNOWN)]).accepted == 2
    rollup_until_current()
    # What migration 0010 runs on an existing installation.
    migration = importlib.import_module("alerts.migrations.0010_model_notices").Migration
    with connection.cursor() as cursor:
        for statement in migration.operations[-1].sql:
            cursor.execute(statement)
    assert sorted(ModelNotice.objects.filter(baseline=True).values_list("model", "kind")) == [
        (UNKNOWN, "new_model"),
        (UNKNOWN, "unpriced_model"),
        ("claude-haiku-4-5", "new_model"),
    ]
    assert model_notices_check(project_ids=[project.key.project_id]) == 0
    assert model_notices_check() == 0  # the periodic pass over every project
    assert Notification.objects.count() == 0
    # A model first seen after the upgrade still notifies.
    assert ingest(project.key, [ev("k3", UNKNOWN_2)]).accepted == 1
    rollup_until_current()
    assert model_notices_check() == 2


def test_a_project_without_admin_addresses_records_the_model_and_sends_nothing(transactional_db):
    from tests.rollups.helpers import ingest

    key = ingest_key_create(project_slug="lonely", environment_name="dev").key
    assert ingest(key, [ev("l1", UNKNOWN)]).accepted == 1
    rollup_until_current()
    assert model_notices_check() == 0
    assert ModelNotice.objects.filter(project=key.project).count() == 2
    assert Notification.objects.count() == 0
