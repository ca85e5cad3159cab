"""HTTP helpers shared by the API views, and the middleware every /api/v1/ request passes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.db.utils import DataError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

DB_RETRY_AFTER_S = 5


def json_error(status: int, message: str, *, retry_after: int | None = None) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def field_error(field: str, message: str) -> JsonResponse:
    """A 400 naming the one field at fault, in the shape of a form's errors (CONTRACT §5)."""
    return JsonResponse({"errors": [{"field": field, "message": message}]}, status=400)


# Errors the database layer raises that are answered, not 500s: input PostgreSQL cannot hold
# (a NUL byte, a lone surrogate) is the client's fault, a 400; PostgreSQL unreachable (or a
# transient server error) is a 503 with Retry-After, nothing having been committed.
CLIENT_INPUT_ERRORS = (DataError, UnicodeEncodeError)
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


def database_error_answer(exc: Exception) -> tuple[int, str, int | None]:
    """(status, message, Retry-After) for one of CLIENT_INPUT_ERRORS or UNAVAILABLE_ERRORS, logged;
    after an unavailable database the broken connection is dropped so the next request reconnects."""
    if isinstance(exc, CLIENT_INPUT_ERRORS):
        logger.info("rejected input: %s", exc)
        return 400, f"invalid input: {str(exc).splitlines()[0]}", None
    logger.warning("database unavailable: %s", exc)
    connection.close()
    return 503, "database unavailable, retry later", DB_RETRY_AFTER_S


def database_unavailable_as_503(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """PostgreSQL unreachable (or a transient server error): 503 with Retry-After, never a 500.
    Nothing was committed in that case, so the client may safely re-send the whole body.
    Values PostgreSQL refuses (DataError, e.g. NUL bytes) are the client's: 400.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except (*CLIENT_INPUT_ERRORS, *UNAVAILABLE_ERRORS) as exc:
            status, message, retry_after = database_error_answer(exc)
            return json_error(status, message, retry_after=retry_after)

    return wrapper


API_PREFIX = "/api/v1/"


def nul_parameter(request: HttpRequest) -> str | None:
    """The first query parameter whose value holds a NUL byte, if any. The raw query string is
    looked at first, so a request without one (nearly all) never has its parameters parsed here."""
    query = request.META.get("QUERY_STRING", "")
    if "%00" not in query and "\x00" not in query:
        return None
    return next((name for name, values in request.GET.lists() if any("\x00" in v for v in values)), None)


class ApiNulParameterMiddleware:
    """A NUL byte in a query parameter of any /api/v1/ request: 400 naming the parameter.

    PostgreSQL text cannot hold NUL, so no stored name can match such a value; answered here,
    once for every API view, rather than by each view (or as a DataError deep in a query).
    The body is the metrics API's bad-parameter shape, and config/openapi.py declares this 400
    on every operation.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            name = nul_parameter(request)
            if name is not None:
                return JsonResponse({"error": f"{name}: must not contain a NUL character", "field": name}, status=400)
        return self.get_response(request)
