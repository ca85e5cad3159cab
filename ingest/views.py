from __future__ import annotations

import zlib

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.http import database_unavailable_as_503, json_error
from core.observability import ingest_observe
from ingest import otlp
from ingest.endpoint import BodyTooLarge, Reply, body_read, events_post_handle
from ingest.ratelimit import rate_limit_check
from projects.services import INGEST_SCOPES, key_from_bearer


def _read_body(request: HttpRequest, limit: int) -> bytes:
    """The request body, gunzipped if needed; BodyTooLarge past `limit` bytes either way."""
    return body_read(
        request.read,
        content_length=request.META.get("CONTENT_LENGTH"),
        content_encoding=request.headers.get("Content-Encoding"),
        limit=limit,
    )


def events_post_reply(request: HttpRequest) -> Reply:
    """The answer to one `POST /api/v1/events`, from the request's few inputs (ingest/endpoint.py)."""
    meta = request.META
    return events_post_handle(
        authorization=meta.get("HTTP_AUTHORIZATION"),
        content_type=request.content_type or "",
        content_encoding=meta.get("HTTP_CONTENT_ENCODING"),
        content_length=meta.get("CONTENT_LENGTH"),
        read=request.read,
    )


def reply_response(reply: Reply) -> HttpResponse:
    response = HttpResponse(reply.body, status=reply.status, content_type="application/json")
    if reply.retry_after is not None:
        response["Retry-After"] = str(reply.retry_after)
    return response


@csrf_exempt
@require_POST
def events_post(request: HttpRequest) -> HttpResponse:
    """CONTRACT §3: one event or {"events": [...]}; 202 once the accepted ones are committed.

    The web server's plain POSTs are answered by ingest/wsgi.py from the same `events_post_reply`,
    without the middleware chain; this view answers everything else (another method, a query
    string) and Django's test client.
    """
    return reply_response(events_post_reply(request))


@csrf_exempt
@require_POST
@database_unavailable_as_503
def otlp_traces(request: HttpRequest) -> HttpResponse:
    """CONTRACT §3 `POST /v1/traces`: OTLP/HTTP (protobuf or JSON); GenAI spans become events.

    Answers in the request's encoding: 200 + ExportTraceServiceResponse once the events are
    committed (rejected spans in partial_success), 400 + google.rpc.Status for a bad body.
    """
    key = key_from_bearer(authorization=request.headers.get("Authorization"), scopes=INGEST_SCOPES)
    if key is None:
        return json_error(401, "missing, unknown or revoked ingest key (Authorization: Bearer <key>)")
    retry_after = rate_limit_check(key_id=key.pk)
    if retry_after:
        return json_error(429, "rate limit exceeded for this key", retry_after=retry_after)
    content_type = request.content_type
    if content_type not in otlp.CONTENT_TYPES:
        return json_error(415, "Content-Type must be application/x-protobuf or application/json")
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("identity", "gzip"):
        return json_error(415, "Content-Encoding must be gzip (or none)")
    try:
        export = otlp.request_parse(
            _read_body(request, settings.TALLY_INGEST_MAX_BODY_BYTES), content_type=content_type
        )
    except BodyTooLarge:
        return json_error(413, f"body is over {settings.TALLY_INGEST_MAX_BODY_BYTES} bytes (compressed or not)")
    except (otlp.OtlpBodyError, ValueError, zlib.error) as exc:
        return HttpResponse(
            otlp.status_body(str(exc), content_type=content_type), status=400, content_type=content_type
        )
    result = otlp.traces_ingest(
        project_id=key.project_id,
        environment_id=key.environment_id,
        request=export,
        max_batch=settings.TALLY_INGEST_MAX_BATCH,
    )
    ingest_observe(
        project=key.project.slug, accepted=result.accepted, duplicates=result.duplicates, rejected=len(result.rejected)
    )
    return HttpResponse(otlp.response_body(result, content_type=content_type), content_type=content_type)
