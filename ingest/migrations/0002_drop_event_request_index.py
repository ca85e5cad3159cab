"""Events are found by request id through ingest_eventkey (its primary key gives the
timestamp, which pins one partition), so the per-partition (project_id, request_id) index
only cost ingest a third index write per event."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ingest", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "DROP INDEX IF EXISTS ingest_event_project_request",
            "CREATE INDEX IF NOT EXISTS ingest_event_project_request ON ingest_event (project_id, request_id)",
        ),
    ]
