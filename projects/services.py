"""Writes for projects, environments and keys.

Invariants: a key's secret is returned once by `ingest_key_create` and never stored;
a key is tied to one project and one environment, both fixed at creation. A revoke takes
effect on the next request (key_from_bearer reads revoked_at every time, nothing caches it).
A project that has an admin member keeps at least one: the last admin can't be demoted or
removed (superusers, admins everywhere without a row, can still do it in /admin/).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from projects.models import Environment, IngestKey, Membership, Project

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


def project_retention_set(*, project: Project, raw_retention_days: int) -> None:
    """Raw events older than this are dropped by the next retention pass (rollups)."""
    if not 1 <= raw_retention_days <= 3650:
        raise ValueError("raw_retention_days must be 1..3650")
    Project.objects.filter(pk=project.pk).update(raw_retention_days=raw_retention_days)


class LastAdminError(ValueError):
    pass


def membership_add(*, project: Project, user: User, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise ValueError(f"role must be one of {', '.join(Membership.Role.values)}")
    return Membership.objects.create(project=project, user=user, role=role)


def _is_last_admin(membership: Membership) -> bool:
    """Call inside a transaction: locks the project's admin rows, so two admins demoting each
    other at once can't both succeed, then reads the roles as they are now."""
    admins = list(Membership.objects.select_for_update()
                  .filter(project_id=membership.project_id, role=Membership.Role.ADMIN).values_list("pk", flat=True))
    return admins == [membership.pk]


@transaction.atomic
def membership_role_set(*, membership: Membership, role: str) -> None:
    if role not in Membership.Role.values:
        raise ValueError(f"role must be one of {', '.join(Membership.Role.values)}")
    if role != Membership.Role.ADMIN and _is_last_admin(membership):
        raise LastAdminError("This is the project's last admin: make someone else admin first.")
    Membership.objects.filter(pk=membership.pk).update(role=role)


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    if _is_last_admin(membership):
        raise LastAdminError("This is the project's last admin: make someone else admin first.")
    Membership.objects.filter(pk=membership.pk).delete()
