"""Two of the stock middleware, made cheap for the responses that do not need their work.

Measured in one process on the 2-core box (Django's handler called directly, 3,000 requests):
of the 0.6 ms CPU a `GET /healthz` took, django-csp built the policy header from settings for
0.15 ms and the messages framework built its cookie storage (a signer per request) for 0.05 ms,
on every response, API answers included. Both are kept; they do that work only when it can
differ from one response to the next.
"""

from __future__ import annotations

from typing import Any

from csp.constants import HEADER
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as StockCSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.contrib.messages.middleware import MessageMiddleware as StockMessageMiddleware
from django.contrib.messages.storage import default_storage
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty

# What a view or decorator can set to change one response's policy (django-csp's names).
_PER_RESPONSE = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_exempt",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
    "_csp_exempt_ro",
)


class CSPMiddleware(StockCSPMiddleware):
    """django-csp's middleware with the policy header built once per process.

    The header is the one `CONTENT_SECURITY_POLICY` spells, the same for every response, unless a
    response carries per-view settings, a template asked for a nonce, or a report-only policy or
    excluded prefixes are configured: then django-csp does it all, as it would anyway.
    """

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", None) or {}
        simple = not settings.DEBUG and not policy.get("EXCLUDE_URL_PREFIXES")
        simple = simple and not getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        self.header = build_policy() if simple else None

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            self.header is None
            or getattr(request, "_csp_nonce", None) is not None
            or any(hasattr(response, name) for name in _PER_RESPONSE)
        ):
            return super().process_response(request, response)
        if self.header and HEADER not in response:
            response[HEADER] = self.header
        # As django-csp does: a nonce asked for after the header is written is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response


class MessageMiddleware(StockMessageMiddleware):
    """Django's, with the message storage made on the first use of `request._messages`."""

    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(lambda: default_storage(request))  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response  # never touched: nothing was read or added
        return super().process_response(request, response)
