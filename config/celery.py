"""The Celery app and its static beat schedule."""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("tally")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Seconds between rollup passes: how fresh the dashboards are. Sub-minute, so a plain interval
# rather than a crontab; `expires` drops a pass that waited longer than one interval (the next
# one does the same work, it is idempotent).
ROLLUP_INTERVAL_S = float(os.environ.get("TALLY_ROLLUP_INTERVAL", "30"))

app.conf.beat_schedule = {
    "rollups.rollup_dirty_hours": {
        "task": "rollups.rollup_dirty_hours",
        "schedule": ROLLUP_INTERVAL_S,
        "options": {"expires": ROLLUP_INTERVAL_S},
    },
    # Emails whose first attempt failed (SMTP down, broker down at queue time): retried
    # every minute with per-row backoff. Minute cadence: a delayed alert is a late alert.
    "alerts.send_notifications": {
        "task": "alerts.send_notifications",
        "schedule": crontab(minute="*/1"),
        "options": {"expires": 60},
    },
    # The opt-in nightly summary of yesterday, once the last hour of the day is rolled up.
    "alerts.daily_digest": {
        "task": "alerts.daily_digest",
        "schedule": crontab(minute=10, hour=0),
        "options": {"expires": 3600},
    },
    # Retention once a day, after the digest; dropping whole day partitions is instant.
    "rollups.apply_retention": {
        "task": "rollups.apply_retention",
        "schedule": crontab(minute=20, hour=0),
        "options": {"expires": 3600},
    },
    # Partitions for the coming days must exist before events arrive; hourly is plenty
    # (ingest also creates a missing partition on demand). Minute 7: away from :00.
    "ingest.partitions_ensure": {
        "task": "ingest.partitions_ensure",
        "schedule": crontab(minute=7),
        "options": {"expires": 3600},
    },
    # Anthropic's usage and cost reports (CONTRACT §7): daily buckets, so hourly keeps today's
    # partial day current without asking the Admin API more than needed; each run re-reads the
    # last 3 days, which the provider revises. Minute 37: away from :00, :07, :10 and :20.
    "providers.sync_provider_usage": {
        "task": "providers.sync_provider_usage",
        "schedule": crontab(minute=37),
        "options": {"expires": 3600},
    },
}
