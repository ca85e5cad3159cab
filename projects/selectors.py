"""Reads for projects and keys."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.db.models import F, Q
from django.http import HttpRequest
from django.utils import timezone

from core.caches import process_cache
from projects.models import IngestKey, Membership, Project
from projects.services import key_hash

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
    key = IngestKey(id=key_id, project_id=project_id, environment_id=environment_id, scope=scope,
                    last_used_at=last_used_at)
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
    key = key_from_bearer(authorization=authorization, scopes=(IngestKey.Scope.INGEST,))
    if key is None:
        return None
    ref = IngestKeyRef(id=key.pk, project_id=key.project_id, environment_id=key.environment_id,
                       project_slug=key.project.slug, from_cache=True)
    if len(_ingest_keys) >= INGEST_KEY_CACHE_MAX:
        _ingest_keys.clear()
    _ingest_keys[digest] = (ref, time.monotonic())
    return IngestKeyRef(id=ref.id, project_id=ref.project_id, environment_id=ref.environment_id,
                        project_slug=ref.project_slug, from_cache=False)


def ingest_key_is_live(*, key_id: int) -> bool:
    return IngestKey.objects.filter(pk=key_id, revoked_at__isnull=True).exists()


@process_cache
def ingest_keys_forget() -> None:
    """Drop remembered keys."""
    _ingest_keys.clear()


READ_SCOPES = (IngestKey.Scope.READ, IngestKey.Scope.ADMIN)


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
        key = key_from_bearer(authorization=request.headers["Authorization"], scopes=(IngestKey.Scope.ADMIN,))
        return None if key is None else [key.project_id]
    if request.user.is_authenticated:
        from projects.permissions import admin_projects

        return list(admin_projects(request.user).values_list("pk", flat=True)) or None
    return None


def project_keys(*, project: Project) -> list[IngestKey]:
    """Every key of the project, live first, newest first."""
    return list(IngestKey.objects.filter(project=project).select_related("environment")
                .order_by(F("revoked_at").asc(nulls_first=True), "-created_at"))


def project_members(*, project: Project) -> list[Membership]:
    return list(Membership.objects.filter(project=project).select_related("user").order_by("user__username"))
