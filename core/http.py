"""HTTP helpers shared by the API views."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

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


def database_unavailable_as_503(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """PostgreSQL unreachable (or a transient server error): 503 with Retry-After, never a 500.
    Nothing was committed in that case, so the client may safely re-send the whole body.
    Values PostgreSQL refuses (DataError, e.g. NUL bytes) are the client's: 400.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:  # type: ignore[no-untyped-def]
        try:
            return view(request, *args, **kwargs)
        except DataError as exc:
            # Input PostgreSQL cannot hold (a NUL byte in a filter, say): the client's fault, not ours.
            logger.info("rejected input: %s", exc)
            return json_error(400, f"invalid input: {str(exc).splitlines()[0]}")
        except (OperationalError, InterfaceError) as exc:
            logger.warning("database unavailable: %s", exc)
            # Drop the broken connection now so the next request reconnects.
            connection.close()
            return json_error(503, "database unavailable, retry later", retry_after=DB_RETRY_AFTER_S)

    return wrapper
