"""Shared fixtures. The suite runs against real PostgreSQL and Redis: `make test` starts the
embedded ones (core/embedded.py) unless DATABASE_URL / CELERY_BROKER_URL are set."""

from __future__ import annotations

import pytest


@pytest.fixture
def project(db):  # type: ignore[no-untyped-def]
    from projects.services import environment_get_or_create, project_get_or_create

    project = project_get_or_create(slug="acme")
    environment_get_or_create(project=project, name="prod")
    return project
