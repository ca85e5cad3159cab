"""The Celery app and its static beat schedule."""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("tally")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Partitions for the coming days must exist before events arrive; hourly is plenty
    # (ingest also creates a missing partition on demand). Minute 7: away from :00.
    "ingest.partitions_ensure": {
        "task": "ingest.partitions_ensure",
        "schedule": crontab(minute=7),
        "options": {"expires": 3600},
    },
}
