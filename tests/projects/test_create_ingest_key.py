from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from projects.models import Environment, IngestKey, Project
from projects.services import key_hash


def test_creates_project_environment_and_prints_secret_alone_on_last_line(db):
    out, err = StringIO(), StringIO()
    call_command("create_ingest_key", "--project", "shop", "--environment", "staging", stdout=out, stderr=err)
    secret = out.getvalue().strip().splitlines()[-1]
    assert secret.startswith("tly_")
    assert " " not in secret
    assert len(secret) > 40
    key = IngestKey.objects.get()
    assert key.key_hash == key_hash(secret)
    assert secret not in {key.key_hash, key.prefix, key.name}
    assert key.prefix == secret[:12]
    assert (key.project.slug, key.environment.name, key.scope) == ("shop", "staging", "ingest")
    assert "shown once" in err.getvalue()


def test_reuses_existing_project_and_environment(db):
    call_command(
        "create_ingest_key", "--project", "shop", "--environment", "prod", stdout=StringIO(), stderr=StringIO()
    )
    call_command(
        "create_ingest_key",
        "--project",
        "shop",
        "--environment",
        "prod",
        "--scope",
        "read",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    assert Project.objects.count() == 1
    assert Environment.objects.count() == 1
    assert sorted(IngestKey.objects.values_list("scope", flat=True)) == ["ingest", "read"]


def test_environments_of_a_project_are_separate(db):
    call_command("create_ingest_key", "--project", "shop", "--environment", "dev", stdout=StringIO(), stderr=StringIO())
    call_command(
        "create_ingest_key", "--project", "shop", "--environment", "prod", stdout=StringIO(), stderr=StringIO()
    )
    assert IngestKey.objects.values("environment").distinct().count() == 2


def test_unknown_scope_is_refused(db):
    with pytest.raises(CommandError):
        call_command(
            "create_ingest_key",
            "--project",
            "shop",
            "--environment",
            "dev",
            "--scope",
            "root",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert IngestKey.objects.count() == 0
