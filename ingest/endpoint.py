"""`POST /api/v1/events` (CONTRACT §3) as a plain function of the request's few inputs; the
view (`ingest.views.events_post`) adapts it to Django.

Order of checks, as CONTRACT §3 has them: key (401), rate limit (429), content type (415),
body size (413), JSON (400), shape (400), events (202 or 400). A key this process has seen
live before is taken from memory; every answer given on that basis other than a 202 re-checks
the key first, so a revoked key still always gets its 401 (a 202 re-checks it in the very
statement that writes the events).
"""

from __future__ import annotations

import functools
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

from django.conf import settings

from core.http import CLIENT_INPUT_ERRORS, UNAVAILABLE_ERRORS, database_error_answer
from core.observability import ingest_observe
from ingest.ratelimit import rate_limit_check
from ingest.schemas import BodyError
from ingest.services import KeyNotLive, events_ingest
from projects.selectors import ingest_key_is_live
from projects.services import IngestKeyRef, ingest_key_from_bearer

logger = logging.getLogger(__name__)

P = ParamSpec("P")

KEY_ERROR = "missing, unknown or revoked ingest key (Authorization: Bearer <key>)"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    retry_after: int | None = None


def _error(status: int, message: str, *, retry_after: int | None = None) -> Reply:
    # json.dumps as Django's JsonResponse does it (same separators, ASCII escapes).
    return Reply(status, json.dumps({"error": message}).encode(), retry_after)


UNAUTHORIZED = _error(401, KEY_ERROR)


class BodyTooLarge(Exception):
    pass


def body_read(
    read: Callable[[int], bytes], *, content_length: str | None, content_encoding: str | None, limit: int
) -> bytes:
    """The request body, gunzipped if needed; BodyTooLarge past `limit` bytes either way."""
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise BodyTooLarge
    raw = read(limit + 1)
    if len(raw) > limit:
        raise BodyTooLarge
    if content_encoding and content_encoding.strip().lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = inflater.decompress(raw, limit + 1)
        if len(data) > limit or inflater.unconsumed_tail:
            raise BodyTooLarge
        if not inflater.eof:
            raise ValueError("truncated gzip body")
        return data
    return raw


def _recheck(key: IngestKeyRef, reply: Reply) -> Reply:
    """A non-2xx answer for a key taken from memory: a key revoked meanwhile gets its 401."""
    if key.from_cache and not ingest_key_is_live(key_id=key.id):
        return UNAUTHORIZED
    return reply


def _database_errors_answered(handle: Callable[P, Reply]) -> Callable[P, Reply]:
    """PostgreSQL unreachable is a 503 with Retry-After (nothing was committed, re-sending is
    safe); values PostgreSQL refuses are the client's, a 400."""

    @functools.wraps(handle)
    def answered(*args: P.args, **kwargs: P.kwargs) -> Reply:
        try:
            return handle(*args, **kwargs)
        except (*CLIENT_INPUT_ERRORS, *UNAVAILABLE_ERRORS) as exc:
            status, message, retry_after = database_error_answer(exc)
            return _error(status, message, retry_after=retry_after)

    return answered


@_database_errors_answered
def events_post_handle(
    *,
    authorization: str | None,
    content_type: str,
    content_encoding: str | None,
    content_length: str | None,
    read: Callable[[int], bytes],
) -> Reply:
    """The whole answer to one POST: 202 only once the accepted events are committed.

    `content_type` is the media type alone, lower case (no parameters).
    """
    key = ingest_key_from_bearer(authorization=authorization)
    if key is None:
        return UNAUTHORIZED
    retry_after = rate_limit_check(key_id=key.id)
    if retry_after:
        return _recheck(key, _error(429, "rate limit exceeded for this key", retry_after=retry_after))
    if content_type != "application/json":
        return _recheck(key, _error(415, "Content-Type must be application/json"))
    limit = settings.TALLY_INGEST_MAX_BODY_BYTES
    max_batch = settings.TALLY_INGEST_MAX_BATCH
    try:
        data = body_read(read, content_length=content_length, content_encoding=content_encoding, limit=limit)
    except BodyTooLarge:
        return _recheck(key, _error(413, f"body is over {limit} bytes (compressed or not)"))
    except (ValueError, zlib.error) as exc:
        return _recheck(key, _error(400, f"malformed JSON or gzip: {exc}"))
    try:
        result = events_ingest(
            project_id=key.project_id, environment_id=key.environment_id, body=data, max_batch=max_batch, key_id=key.id
        )
    except BodyError as exc:
        return _recheck(key, _error(400, str(exc)))
    except KeyNotLive:
        return UNAUTHORIZED
    ingest_observe(
        project=key.project_slug, accepted=result.accepted, duplicates=result.duplicates, rejected=len(result.rejected)
    )
    if result.accepted + result.duplicates:
        if not result.rejected:  # the usual answer, formatted without json.dumps
            return Reply(
                202, b'{"accepted": %d, "duplicates": %d, "rejected": []}' % (result.accepted, result.duplicates)
            )
        return Reply(202, json.dumps(result.as_dict()).encode())
    return _recheck(key, Reply(400, json.dumps(result.as_dict()).encode()))
