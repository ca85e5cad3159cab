"""WSGI entry point (granian `config.wsgi:application`)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
application = get_wsgi_application()

# The cyclic garbage collector was ~8% of a web worker's CPU under batch ingest, which allocates
# tens of thousands of short-lived objects per request (and frees them by reference counting).
# Everything loaded so far (Django, the apps: well over 100k objects) lives as long as the
# process: frozen, full collections stop walking it. A larger first-generation threshold makes
# collections rarer while a batch is alive (the default, 700 allocations, means one every ~25
# events); memory held in garbage cycles is freed a little later.
gc.freeze()
gc.set_threshold(20_000, 20, 10)
