"""Raw events, their idempotency keys and the dirty-hour markers.

The events table is range-partitioned by day on `timestamp` (native PostgreSQL
partitioning, created by raw SQL in migration 0001; Django only reads it, hence
`managed = False`). Why a separate `EventKey` table for idempotency:

PostgreSQL requires every unique constraint on a partitioned table to include the
partition key, so `UNIQUE(project_id, request_id)` cannot exist on `ingest_event`.
`UNIQUE(project_id, request_id, timestamp)` would not dedupe: a client that re-sends an
event without `timestamp` gets a new "time received", and a client may re-send with a
corrected clock. So the key lives in `ingest_eventkey`, an unpartitioned table whose
primary key is exactly `(project_id, request_id)`; ingest inserts the key with
`ON CONFLICT DO NOTHING` and writes the event only for keys it inserted, in the same
transaction. Two racing posts of one request_id serialise on that index entry: the
second waits for the first to commit, then sees the conflict and stores nothing.
Retention deletes keys together with the day partitions they point at.
"""

from __future__ import annotations

from django.db import models


class Event(models.Model):
    """One LLM API call. Read-only through the ORM; written by `events_ingest` via COPY."""

    id = models.BigIntegerField(primary_key=True)
    project = models.ForeignKey("projects.Project", on_delete=models.DO_NOTHING, db_constraint=False)
    environment = models.ForeignKey("projects.Environment", on_delete=models.DO_NOTHING, db_constraint=False)
    request_id = models.CharField(max_length=128)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    model = models.CharField(max_length=128)
    provider = models.CharField(max_length=64)
    service = models.CharField(max_length=128)
    feature = models.CharField(max_length=128)
    user_id = models.CharField(max_length=256)
    status = models.CharField(max_length=8)
    error_type = models.CharField(max_length=64)
    http_status = models.SmallIntegerField(null=True)
    stop_reason = models.CharField(max_length=64)
    service_tier = models.CharField(max_length=32)
    batch = models.BooleanField()
    latency_ms = models.FloatField()
    time_to_first_token_ms = models.FloatField(null=True)
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_read_input_tokens = models.BigIntegerField()
    cache_creation_input_tokens = models.BigIntegerField()
    cache_write_5m_tokens = models.BigIntegerField()
    cache_write_1h_tokens = models.BigIntegerField()
    cost_usd = models.DecimalField(max_digits=20, decimal_places=10, null=True)
    cache_savings_usd = models.DecimalField(max_digits=20, decimal_places=10, null=True)
    client_cost_usd = models.DecimalField(max_digits=20, decimal_places=10, null=True)
    price_source = models.CharField(max_length=128)
    metadata = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = "ingest_event"

    def __str__(self) -> str:
        return self.request_id


class EventKey(models.Model):
    """Idempotency key of a stored event: PRIMARY KEY (project_id, request_id)."""

    project_id = models.BigIntegerField(primary_key=True)  # really (project_id, request_id), see migration
    request_id = models.CharField(max_length=128)
    timestamp = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "ingest_eventkey"

    def __str__(self) -> str:
        return f"{self.project_id}:{self.request_id}"


class DirtyHour(models.Model):
    """'Hour H of project P has new or changed raw events.'

    Append-only: ingest inserts one row per (project, hour) per transaction, in the
    same transaction as the events, so a marker is visible exactly when its events are.
    Appending (rather than upserting one row per hour) keeps concurrent ingest free of
    row-lock contention; the rollup claims markers with DELETE ... RETURNING under
    SKIP LOCKED in the transaction that rewrites the hour, so a crash puts them back.
    """

    project_id = models.BigIntegerField()
    hour_start = models.DateTimeField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["hour_start"], name="dirtyhour_hour_idx")]

    def __str__(self) -> str:
        return f"{self.project_id}@{self.hour_start:%Y-%m-%dT%H}"
