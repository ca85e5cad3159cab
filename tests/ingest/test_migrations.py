"""Migrations that rewrite stored events keep every stored amount exactly, both ways."""

from __future__ import annotations

from decimal import Decimal

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE_UNITS = [("ingest", "0003_eventkey_lean_indexes")]
UNITS = [("ingest", "0004_event_cost_units")]


def _migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def test_costs_become_integer_units_and_come_back(clean_events):
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        _migrate(BEFORE_UNITS)
        with connection.cursor() as cursor:
            cursor.execute(
                'INSERT INTO ingest_event (project_id, environment_id, request_id, "timestamp", received_at, model, '
                "provider, service, status, latency_ms, cost_usd, cache_savings_usd) VALUES "
                "(1, 1, 'priced', now(), now(), 'm', 'anthropic', 's', 'ok', 1, 1234.0123456789, -0.0000000005), "
                "(1, 1, 'unpriced', now(), now(), 'm', 'anthropic', 's', 'ok', 1, NULL, NULL)"
            )
        _migrate(UNITS)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT request_id, cost_units, cost_usd, cache_savings_units, cache_savings_usd "
                "FROM ingest_event ORDER BY request_id"
            )
            assert cursor.fetchall() == [
                ("priced", 12_340_123_456_789, Decimal("1234.0123456789"), -5, Decimal("-5E-10")),
                ("unpriced", None, None, None, None),
            ]
            # New rows give units; PostgreSQL computes the dollars.
            cursor.execute(
                'INSERT INTO ingest_event (project_id, environment_id, request_id, "timestamp", received_at, model, '
                "provider, service, status, latency_ms, cost_units, cache_savings_units) VALUES "
                "(1, 1, 'zz-new', now(), now(), 'm', 'anthropic', 's', 'ok', 1, 1, 0) "
                "RETURNING cost_usd, cache_savings_usd"
            )
            assert cursor.fetchone() == (Decimal("1E-10"), Decimal("0E-10"))
        _migrate(BEFORE_UNITS)
        with connection.cursor() as cursor:
            cursor.execute("SELECT request_id, cost_usd, cache_savings_usd FROM ingest_event ORDER BY request_id")
            assert cursor.fetchall() == [
                ("priced", Decimal("1234.0123456789"), Decimal("-5E-10")),
                ("unpriced", None, None),
                ("zz-new", Decimal("1E-10"), Decimal("0E-10")),
            ]
    finally:
        _migrate(latest)
