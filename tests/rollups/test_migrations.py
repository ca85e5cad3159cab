"""rollups 0004: aggregates written before batch exclusion and TTFT are recomputed from raw
events where those are kept, and kept as they are where raw retention has dropped them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from projects.services import ingest_key_create
from rollups.services import rollup_until_current, rollups_verify
from rollups.sketch import bucket_of
from tests.rollups.helpers import hour, ingest

pytestmark = pytest.mark.usefixtures("clean_events")

BEFORE = [("rollups", "0003_dailyslice")]
AFTER = [("rollups", "0004_batch_latency_ttft")]
NOW = datetime.now(tz=UTC)


def _migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


OLD_ROW_SQL = """
INSERT INTO rollups_hourlyaggregate (project_id, environment_id, service, model, feature, hour_start, requests,
    errors, input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens, cache_write_5m_tokens,
    cache_write_1h_tokens, cache_hits, batch_requests, cost_usd, cache_savings_usd, unpriced_requests,
    latency_sum_ms, latency_hist_idx, latency_hist_cnt, errors_by_type, http_status_counts)
VALUES (%s, %s, 'default', 'claude-haiku-4-5', '', %s, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 900100.0,
        %s, '{1,1}', '{}', '{}')
"""


def test_0004_recomputes_hours_with_raw_events_and_keeps_older_ones(transactional_db):
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    key = ingest_key_create(project_slug="acme", environment_name="prod").key
    recent = hour(NOW - timedelta(days=1))
    expired = hour(NOW - timedelta(days=200))  # past raw retention: its events are gone
    try:
        _migrate(BEFORE)
        ingest(
            key,
            [
                {
                    "request_id": "online",
                    "model": "claude-haiku-4-5",
                    "latency_ms": 100,
                    "time_to_first_token_ms": 40,
                    "timestamp": (recent + timedelta(minutes=5)).isoformat(),
                },
                {
                    "request_id": "batch",
                    "model": "claude-haiku-4-5",
                    "latency_ms": 900_000,
                    "batch": True,
                    "timestamp": (recent + timedelta(minutes=6)).isoformat(),
                },
            ],
        )
        with connection.cursor() as cursor:
            # What the rollup before 0004 stored: the batch result inside latency, no TTFT.
            cursor.execute("DELETE FROM ingest_dirtyhour")
            for at in (recent, expired):
                cursor.execute(
                    OLD_ROW_SQL, [key.project_id, key.environment_id, at, [bucket_of(100), bucket_of(900_000)]]
                )
        _migrate(AFTER)
        with connection.cursor() as cursor:
            cursor.execute("SELECT project_id, hour_start FROM ingest_dirtyhour")
            assert cursor.fetchall() == [(key.project_id, recent)]
            cursor.execute("SELECT batch_latency_sum_ms, ttft_hist_idx, ttft_hist_cnt FROM rollups_hourlyaggregate")
            assert cursor.fetchall() == [(0.0, [], []), (0.0, [], [])]
        _migrate(latest)  # today's rollup writes the columns of later migrations too
        rollup_until_current()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT hour_start, requests, batch_requests, latency_sum_ms, batch_latency_sum_ms, "
                "latency_hist_idx, latency_hist_cnt, ttft_hist_idx, ttft_hist_cnt "
                "FROM rollups_hourlyaggregate ORDER BY hour_start"
            )
            assert cursor.fetchall() == [
                (expired, 2, 1, 900100.0, 0.0, [bucket_of(100), bucket_of(900_000)], [1, 1], [], []),
                (recent, 2, 1, 100.0, 900_000.0, [bucket_of(100)], [1], [bucket_of(40)], [1]),
            ]
        assert rollups_verify().differences == []
    finally:
        _migrate(latest)
