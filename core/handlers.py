"""Django's WSGI handler for one hot route: its own short middleware list and no URL resolution.

`config.wsgi` sends `POST /api/v1/events` through a `RouteHandler` and everything else through
Django's usual handler. Why (bench/ingest.py; bench/RESULTS.md, 2026-12-03 evening): a
single-event post spent more of its CPU in Django's request cycle than in ingesting. Sessions,
CSRF, authentication, messages, static files and page headers serve pages, not a JSON endpoint
authenticated by its bearer key; resolving the URL against every pattern adds a tenth more.
Without them, one thread spends 0.46-0.55 ms of CPU on a single event instead of 0.64-0.85 ms,
and the web server's CPU per request under load falls from 1.03-1.23 ms to 0.80-0.93 ms.

It is Django's own handler otherwise: the same request and response classes, request signals
(connection housekeeping), the host check (CommonMiddleware), security headers
(SecurityMiddleware), request IDs, exception-to-response conversion and `django.request` logging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponseBase
from django.urls import ResolverMatch
from django.utils.module_loading import import_string


class RouteHandler(WSGIHandler):
    """Serves exactly one view through `middleware` (dotted paths, outermost first).

    The middleware must be plain request/response middleware: a `process_view`,
    `process_exception` or `process_template_response` hook would be silently skipped, so it is
    refused instead.
    """

    def __init__(self, view: Callable[..., HttpResponseBase], *, route: str, middleware: Sequence[str]) -> None:
        self.match = ResolverMatch(view, (), {}, route=route)
        self.middleware = tuple(middleware)
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        if is_async:
            raise NotImplementedError("RouteHandler is WSGI only")
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # BaseHandler._get_response: resolve (here: the one view) and call the view. django-stubs omits it.
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(self.middleware):
            instance = import_string(path)(handler)
            hooks = [
                h for h in ("process_view", "process_exception", "process_template_response") if hasattr(instance, h)
            ]
            if hooks:
                raise TypeError(f"{path} has {', '.join(hooks)}, which RouteHandler does not run")
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        request.resolver_match = self.match
        return self.match
