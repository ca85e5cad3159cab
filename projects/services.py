"""Writes for projects, environments and keys, and the authentication of bearer keys (which
records each key's use in last_used_at, at most once a minute).

Invariants: a key's secret is returned once by `ingest_key_create` and never stored;
a key is tied to one project and one environment, both fixed at creation. A revoke takes
effect on the next request (key_from_bearer reads revoked_at every time, nothing caches it).
A project that has an admin member keeps at least one: the last admin can't be demoted or
removed (superusers, admins everywhere without a row, can still do it in /admin/).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from core.caches import process_cache
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
    admins = list(
        Membership.objects.select_for_update()
        .filter(project_id=membership.project_id, role=Membership.Role.ADMIN)
        .values_list("pk", flat=True)
    )
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


# --- authentication ----------------------------------------------------------------------

READ_SCOPES = (IngestKey.Scope.READ, IngestKey.Scope.ADMIN)
ADMIN_SCOPES = (IngestKey.Scope.ADMIN,)
INGEST_SCOPES = (IngestKey.Scope.INGEST,)

# last_used_at is a hint for humans; writing it on every request would turn each ingest
# into an extra UPDATE on a hot row, so it is refreshed at most once a minute.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_from_bearer(*, authorization: str | None, scopes: tuple[str, ...]) -> IngestKey | None:
    """The live key named by an `Authorization: Bearer ...` header, if it has one of `scopes`."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    secret = authorization[7:].strip()
    if not secret:
        return None
    # One indexed probe in plain SQL: this runs on every ingest request, where the ORM's
    # select_related machinery cost more than the query itself.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT k.id, k.project_id, k.environment_id, k.scope, k.last_used_at, p.slug "
            "FROM projects_ingestkey k JOIN projects_project p ON p.id = k.project_id "
            "WHERE k.key_hash = %s AND k.revoked_at IS NULL AND k.scope = ANY(%s)",
            [key_hash(secret), list(scopes)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    key_id, project_id, environment_id, scope, last_used_at, slug = row
    key = IngestKey(
        id=key_id, project_id=project_id, environment_id=environment_id, scope=scope, last_used_at=last_used_at
    )
    key.project = Project(id=project_id, slug=slug)
    now = timezone.now()
    if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
        IngestKey.objects.filter(pk=key_id).update(last_used_at=now)
    return key


@dataclass(frozen=True, slots=True)
class IngestKeyRef:
    """What ingest needs of a live ingest key. `from_cache`: read from this process's memory, so
    the key may have been revoked since; the writer re-checks it (`ingest_key_is_live`)."""

    id: int
    project_id: int
    environment_id: int
    project_slug: str
    from_cache: bool


# key hash -> (the key as found live, when this process last refreshed its last_used_at).
# A key's project, environment and scope never change, and revocation is checked again where
# it matters (in the statement that writes the events), so a hit skips the lookup query that
# every ingest request made. Unknown keys are never remembered: a key created a moment ago
# works at once. Bounded, since anyone can send any bearer token.
_ingest_keys: dict[str, tuple[IngestKeyRef, float]] = {}
INGEST_KEY_CACHE_MAX = 10_000


def ingest_key_from_bearer(*, authorization: str | None) -> IngestKeyRef | None:
    """The ingest key named by an `Authorization: Bearer ...` header: remembered if seen live
    before in this process, else looked up (None when missing, unknown, revoked or not ingest)."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    secret = authorization[7:].strip()
    if not secret:
        return None
    digest = key_hash(secret)
    cached = _ingest_keys.get(digest)
    if cached is not None:
        ref, touched = cached
        if time.monotonic() - touched > LAST_USED_RESOLUTION.total_seconds():
            _ingest_keys[digest] = (ref, time.monotonic())
            IngestKey.objects.filter(pk=ref.id, revoked_at__isnull=True).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=timezone.now() - LAST_USED_RESOLUTION)
            ).update(last_used_at=timezone.now())
        return ref
    key = key_from_bearer(authorization=authorization, scopes=INGEST_SCOPES)
    if key is None:
        return None
    ref = IngestKeyRef(
        id=key.pk,
        project_id=key.project_id,
        environment_id=key.environment_id,
        project_slug=key.project.slug,
        from_cache=True,
    )
    if len(_ingest_keys) >= INGEST_KEY_CACHE_MAX:
        _ingest_keys.clear()
    _ingest_keys[digest] = (ref, time.monotonic())
    return IngestKeyRef(
        id=ref.id,
        project_id=ref.project_id,
        environment_id=ref.environment_id,
        project_slug=ref.project_slug,
        from_cache=False,
    )


@process_cache
def ingest_keys_forget() -> None:
    """Drop remembered keys."""
    _ingest_keys.clear()


def api_project_ids(request: HttpRequest, *, project_slug: str | None = None) -> list[int] | None:
    """Projects an API request may read: a read/admin key's own project, or, for a logged-in
    user, every project (narrowed by `project_slug`). None when the request is anonymous."""
    if request.headers.get("Authorization"):
        key = key_from_bearer(authorization=request.headers["Authorization"], scopes=READ_SCOPES)
        return None if key is None else [key.project_id]
    if not request.user.is_authenticated:
        return None
    from projects.permissions import visible_projects

    projects = visible_projects(request.user)
    if project_slug:
        projects = projects.filter(slug=project_slug)
    return list(projects.values_list("pk", flat=True))


def admin_project_ids(request: HttpRequest) -> list[int] | None:
    """Projects an admin request may manage: an admin key's project, or the projects a logged-in
    user administers (superusers: all). None when neither."""
    if request.headers.get("Authorization"):
        key = key_from_bearer(authorization=request.headers["Authorization"], scopes=ADMIN_SCOPES)
        return None if key is None else [key.project_id]
    if request.user.is_authenticated:
        from projects.permissions import admin_projects

        return list(admin_projects(request.user).values_list("pk", flat=True)) or None
    return None
