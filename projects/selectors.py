"""Reads for projects and keys."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from projects.models import IngestKey
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
    key = (
        IngestKey.objects.select_related("project", "environment")
        .filter(key_hash=key_hash(secret), revoked_at__isnull=True, scope__in=scopes)
        .first()
    )
    if key is not None:
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            IngestKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


READ_SCOPES = (IngestKey.Scope.READ, IngestKey.Scope.ADMIN)


def api_project_ids(request, *, project_slug: str | None = None) -> list[int] | None:  # type: ignore[no-untyped-def]
    """Projects an API request may read: a read/admin key's own project, or, for a logged-in
    user, every project (narrowed by `project_slug`). None when the request is anonymous."""
    from projects.models import Project

    if request.headers.get("Authorization"):
        key = key_from_bearer(authorization=request.headers["Authorization"], scopes=READ_SCOPES)
        return None if key is None else [key.project_id]
    if not request.user.is_authenticated:
        return None
    projects = Project.objects.all()
    if project_slug:
        projects = projects.filter(slug=project_slug)
    return list(projects.values_list("pk", flat=True))


def admin_project_ids(request) -> list[int] | None:  # type: ignore[no-untyped-def]
    """Projects an admin request may manage: an admin key's project, or every project for a
    staff session. None when neither."""
    from projects.models import Project

    if request.headers.get("Authorization"):
        key = key_from_bearer(authorization=request.headers["Authorization"], scopes=(IngestKey.Scope.ADMIN,))
        return None if key is None else [key.project_id]
    if request.user.is_authenticated and request.user.is_staff:
        return list(Project.objects.values_list("pk", flat=True))
    return None
