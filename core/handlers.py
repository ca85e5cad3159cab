"""`ViewHandler`: Django's WSGI handler serving one view behind a middleware list of its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponseBase
from django.utils.module_loading import import_string

View = Callable[[HttpRequest], HttpResponseBase]


class ViewHandler(WSGIHandler):
    """Django's WSGIHandler for one view, behind the middleware named here instead of all of
    settings.MIDDLEWARE.

    Everything a request goes through is Django's: the WSGIRequest, the request_started and
    request_finished signals (database connection upkeep), each middleware's own code,
    convert_exception_to_response's error answers and logging, the response and its closing. What
    it leaves out is resolving the URL (the caller routed the request here) and the middleware
    the view has no use for. Middleware with view, exception or template-response hooks would
    need URL resolution to run them at the right point, so they are refused.
    """

    def __init__(self, view: View, middleware: Sequence[str]) -> None:
        self.view = view
        self.middleware = tuple(middleware)
        super().__init__()  # loads the middleware

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        handler: Any = convert_exception_to_response(self.view)
        for path in reversed(self.middleware):
            factory = import_string(path)
            hooks = [
                h for h in ("process_view", "process_exception", "process_template_response") if hasattr(factory, h)
            ]
            if hooks:
                raise ImproperlyConfigured(f"{path} has {', '.join(hooks)}, which ViewHandler does not run")
            handler = convert_exception_to_response(factory(handler))
        self._middleware_chain = handler
