"""WSGI entry point (gunicorn `config.wsgi:application`).

`POST /api/v1/events` is answered by `ingest.wsgi.IngestApp` without Django's middleware
(ingest authenticates by bearer key, never by session: see that module); every other request
goes to Django as usual.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
django_application = get_wsgi_application()

from ingest.wsgi import IngestApp  # noqa: E402 - needs the apps loaded by get_wsgi_application

application = IngestApp(django_application)
