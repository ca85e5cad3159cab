"""HTTP helpers shared by the API views."""

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
