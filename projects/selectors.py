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
