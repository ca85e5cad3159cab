"""`manage.py sync_provider_usage` (CONTRACT §2) and the beat task: the same service, and a
failure is reported, recorded, and never raised into beat."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from config.celery import app
from providers.services import provider_connection_set
from providers.tasks import provider_usage_sync_task
from tests.providers.conftest import PROVIDER_DAY, today


def test_the_command_syncs_the_last_n_days_and_returns_when_stored(fake_api, connected):
    for model, figures in PROVIDER_DAY.items():
        fake_api.days[(today() - timedelta(days=9), model)] = figures
    out = StringIO()
    call_command("sync_provider_usage", "--project", "acme", "--days", "10", stdout=out)
    start = today() - timedelta(days=9)
    assert out.getvalue().strip() == f"acme: 3 day/model rows for {start} .. {today()}"
    assert connected.days.count() == 3


def test_the_command_fails_loudly_and_records_the_error(fake_api, connected):
    provider_connection_set(
        project=connected.project, admin_key="sk-ant-admin01-nope-0000", api_key_ids=[], workspace_ids=[]
    )
    err = StringIO()
    with pytest.raises(CommandError, match="sync failed for acme"):
        call_command("sync_provider_usage", stderr=err)
    assert "Anthropic refused the Admin API key (401)" in err.getvalue()
    connected.refresh_from_db()
    assert connected.last_error.startswith("Anthropic refused")


def test_the_command_names_a_missing_project(connected):
    with pytest.raises(CommandError, match="no connected project named nope"):
        call_command("sync_provider_usage", "--project", "nope")


def test_the_beat_task_never_raises_on_a_bad_key(fake_api, connected):
    provider_connection_set(
        project=connected.project, admin_key="sk-ant-admin01-nope-0000", api_key_ids=[], workspace_ids=[]
    )
    assert provider_usage_sync_task.delay().get() == 0  # eager in tests, exceptions would propagate
    connected.refresh_from_db()
    assert connected.last_error.startswith("Anthropic refused")


def test_the_beat_entry_is_hourly_and_names_the_task():
    entry = app.conf.beat_schedule["providers.sync_provider_usage"]
    assert entry["task"] == provider_usage_sync_task.name == "providers.sync_provider_usage"
    assert entry["schedule"].minute == {37}
    assert entry["schedule"].hour == set(range(24))
    assert entry["options"]["expires"] == 3600
