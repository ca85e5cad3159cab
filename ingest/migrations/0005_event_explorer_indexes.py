"""Indexes for the events explorer (dashboard/explorer.py), and why these four and no more.

Every index on `ingest_event` is one more b-tree insert per ingested event, so each one here
answers a question the explorer could not otherwise answer in time (p95 < 150 ms on a 10M-event
project, bench/pages.py) and none duplicates another:

- The three sort orders besides time (latency, cost, tokens; time uses the existing
  (project_id, "timestamp")) each get (project_id, key, id): per day partition the index walks
  the rows already in the explorer's order, ties broken by id, so "the 50 most expensive calls
  of the last 30 days" is a merge of 30 short index scans that stops after 51 rows instead of a
  sort of every call in the range, and a keyset cursor `(key, id) < (v, i)` is an index
  condition. The keys are spelled exactly as ingest/selectors.py's SORT_SQL spells them
  (an expression index is matched by expression). The cost key reads the integer `cost_units`
  (ingest's own column, cheaper than the generated numeric) with unpriced calls as -1, so they
  sort last; a minimum cost is a range condition on the same index.
- (project_id, user_id, "timestamp") WHERE user_id <> '': users are many and each has few calls,
  so a user filter is the one rare-value filter worth its own index (walking a time or cost
  index for one user's handful of calls reads the whole range). Partial: calls without a user
  (background jobs, batch pipelines) cost ingest nothing here.
Not indexed, on purpose: environment, service, model and feature have few values each (a
filter on them keeps a large share of rows, so walking a sort index finds 51 matches quickly),
and status, error type, HTTP status, batch and minimums are filtered on the way.

On a partitioned table CREATE INDEX builds every existing partition in turn under a lock
that blocks ingest: on a large existing install, run this migration in a quiet period.
"""

from django.db import migrations

FORWARD = """
CREATE INDEX IF NOT EXISTS ingest_event_project_latency ON ingest_event (project_id, latency_ms, id);
CREATE INDEX IF NOT EXISTS ingest_event_project_cost ON ingest_event (project_id, (COALESCE(cost_units, -1)), id);
CREATE INDEX IF NOT EXISTS ingest_event_project_tokens ON ingest_event
    (project_id, (input_tokens + output_tokens + cache_read_input_tokens + cache_creation_input_tokens), id);
CREATE INDEX IF NOT EXISTS ingest_event_project_user_ts ON ingest_event (project_id, user_id, "timestamp")
    WHERE user_id <> '';
"""

REVERSE = """
DROP INDEX IF EXISTS ingest_event_project_latency;
DROP INDEX IF EXISTS ingest_event_project_cost;
DROP INDEX IF EXISTS ingest_event_project_tokens;
DROP INDEX IF EXISTS ingest_event_project_user_ts;
"""


class Migration(migrations.Migration):
    dependencies = [("ingest", "0004_event_cost_units")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
