"""Writes for projects, environments and keys.

Invariants: a key's secret is returned once by `ingest_key_create` and never stored;
a key is tied to one project and one environment, both fixed at creation.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from projects.models import Environment, IngestKey, Project

KEY_PREFIX = "tly_"


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    key: IngestKey
    secret: str


def project_get_or_create(*, slug: str, name: str | None = None) -> Project:
    project, _ = Project.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    return project


def environment_get_or_create(*, project: Project, name: str) -> Environment:
    environment, _ = Environment.objects.get_or_create(project=project, name=name)
    return environment


@transaction.atomic
def ingest_key_create(
    *, project_slug: str, environment_name: str, scope: str = IngestKey.Scope.INGEST, name: str = ""
) -> CreatedKey:
    if scope not in IngestKey.Scope.values:
        raise ValueError(f"scope must be one of {', '.join(IngestKey.Scope.values)}")
    project = project_get_or_create(slug=project_slug)
    environment = environment_get_or_create(project=project, name=environment_name)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = IngestKey.objects.create(
        project=project,
        environment=environment,
        scope=scope,
        name=name,
        key_hash=key_hash(secret),
        prefix=secret[:12],
    )
    return CreatedKey(key=key, secret=secret)


def ingest_key_revoke(*, key: IngestKey) -> None:
    IngestKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
