"""The `anthropic-ratelimit-*` header values of a call (CONTRACT §3), nullable: most events have none.

Numbered 0006 because another branch adds 0005_explorer_indexes; the merge re-chains this one
after it. Adding nullable columns without a default only touches the catalog (no rewrite).
"""

from django.db import migrations

NAMES = [
    "ratelimit_requests_limit", "ratelimit_requests_remaining",
    "ratelimit_tokens_limit", "ratelimit_tokens_remaining",
    "ratelimit_input_tokens_limit", "ratelimit_input_tokens_remaining",
    "ratelimit_output_tokens_limit", "ratelimit_output_tokens_remaining",
]

FORWARD = "ALTER TABLE ingest_event " + ", ".join(f"ADD COLUMN {name} bigint NULL" for name in NAMES) + ";"
REVERSE = "ALTER TABLE ingest_event " + ", ".join(f"DROP COLUMN {name}" for name in NAMES) + ";"


class Migration(migrations.Migration):
    dependencies = [("ingest", "0005_event_explorer_indexes")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
