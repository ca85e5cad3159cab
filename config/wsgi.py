"""WSGI entry point (granian `config.wsgi:application`).

`POST /api/v1/events` is the one request services send on every Claude call; everything else
is pages and the rest of the API. It goes to a Django handler of its own (core.handlers.
ViewHandler) that runs the ingest view behind settings.MIDDLEWARE less the page-only ones
(sessions, CSRF, auth, messages, static files, framing and CSP headers) and without URL
resolution: Django's own request, signals, host validation (CommonMiddleware), security headers
and error handling, at about half the CPU. Measured in one process on the 2-core box (Django's
handlers called directly, 3 x 2,000 single-event posts in turns): 1.16-1.40 ms of CPU a
request through the full stack, 0.92-1.02 ms through this one; bench/ingest.py has the
requests/s. Any other path, including /api/v1/events/ with a slash, takes the full stack.
"""

import gc
import os
from collections.abc import Callable
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
pages = get_wsgi_application()  # sets Django up: the imports below need it

from django.conf import settings  # noqa: E402
from django.urls import reverse  # noqa: E402

from core.handlers import ViewHandler  # noqa: E402
from ingest.views import events_post  # noqa: E402

INGEST_PATH = reverse("ingest:events")
ingest = ViewHandler(events_post, [m for m in settings.MIDDLEWARE if m not in settings.PAGE_ONLY_MIDDLEWARE])


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    if environ.get("PATH_INFO") == INGEST_PATH:
        return ingest(environ, start_response)
    return pages(environ, start_response)


# The cyclic garbage collector was ~8% of a web worker's CPU under batch ingest, which allocates
# tens of thousands of short-lived objects per request (and frees them by reference counting).
# Everything loaded so far (Django, the apps: well over 100k objects) lives as long as the
# process: frozen, full collections stop walking it. A larger first-generation threshold makes
# collections rarer while a batch is alive (the default, 700 allocations, means one every ~25
# events); memory held in garbage cycles is freed a little later.
gc.freeze()
gc.set_threshold(20_000, 20, 10)
