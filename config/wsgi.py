"""WSGI entry point (granian `config.wsgi:application`).

`POST /api/v1/events`, the one route that takes every API call of every service, is served by
Django with the short middleware list `INGEST_MIDDLEWARE` and no URL resolution
(core.handlers.RouteHandler); every other path by Django's usual handler.
"""

import gc
import os
from collections.abc import Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
django_application = get_wsgi_application()

from django.conf import settings  # noqa: E402 - after django.setup()

from core.handlers import RouteHandler  # noqa: E402
from ingest.views import events_post  # noqa: E402

INGEST_PATH = "/api/v1/events"
ingest_application = RouteHandler(events_post, route=INGEST_PATH.lstrip("/"), middleware=settings.INGEST_MIDDLEWARE)


def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == INGEST_PATH:
        return ingest_application(environ, start_response)
    return django_application(environ, start_response)


# The cyclic garbage collector was ~8% of a web worker's CPU under batch ingest, which allocates
# tens of thousands of short-lived objects per request (and frees them by reference counting).
# Everything loaded so far (Django, the apps: well over 100k objects) lives as long as the
# process: frozen, full collections stop walking it. A larger first-generation threshold makes
# collections rarer while a batch is alive (the default, 700 allocations, means one every ~25
# events); memory held in garbage cycles is freed a little later.
gc.freeze()
gc.set_threshold(20_000, 20, 10)
