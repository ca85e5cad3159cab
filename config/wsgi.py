"""WSGI entry point (granian `config.wsgi:application`).

Django's usual handler, except for plain `POST /api/v1/events`, the route that takes every API
call of every service: ingest/wsgi.py answers those from Django's request without the
middleware chain (its docstring says why and what it keeps).
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
django_application = get_wsgi_application()

from ingest.wsgi import ingest_application  # noqa: E402 - after django.setup()

application = ingest_application(django_application, "/api/v1/events")

# The cyclic garbage collector was ~8% of a web worker's CPU under batch ingest, which allocates
# tens of thousands of short-lived objects per request (and frees them by reference counting).
# Everything loaded so far (Django, the apps: well over 100k objects) lives as long as the
# process: frozen, full collections stop walking it. A larger first-generation threshold makes
# collections rarer while a batch is alive (the default, 700 allocations, means one every ~25
# events); memory held in garbage cycles is freed a little later.
gc.freeze()
gc.set_threshold(20_000, 20, 10)
