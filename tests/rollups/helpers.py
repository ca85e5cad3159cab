"""Exact aggregates computed in Python from raw events, to compare the rollup against."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from ingest.models import Event
from rollups.sketch import bucket_of


def ingest(key, events: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    from ingest.services import events_ingest

    return events_ingest(
        project_id=key.project_id, environment_id=key.environment_id, body={"events": events}, max_batch=1000
    )


def spend_dollars(key, dollars: int, *, when: datetime, prefix: str = "r", **fields: Any) -> None:  # type: ignore[no-untyped-def]
    """`dollars` calls of exactly $1 each (Haiku 4.5 input is $1 per million tokens), one a second
    back from `when`, with `fields` on each, ingested and rolled up."""
    from rollups.services import rollup_until_current

    events = [
        {
            "request_id": f"{prefix}{i}",
            "model": "claude-haiku-4-5",
            "latency_ms": 10,
            "input_tokens": 1_000_000,
            "timestamp": (when - timedelta(seconds=i + 1)).isoformat(),
            **fields,
        }
        for i in range(dollars)
    ]
    assert ingest(key, events).accepted == dollars
    rollup_until_current()


def aggregate_rows(table: str) -> list[tuple]:
    """Every aggregate row, in a stable order, without surrogate ids."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608
        return sorted((row[1:] for row in cursor.fetchall()), key=repr)


def snapshot() -> dict[str, list[tuple]]:
    return {
        t: aggregate_rows(t)
        for t in ("rollups_hourlyaggregate", "rollups_dailyaggregate", "rollups_dailyslice", "rollups_dailyuserspend")
    }


def exact_hourly() -> dict[tuple, dict[str, Any]]:
    """(project, env, service, model, feature, hour) -> exact sums from raw events, and the latency and
    time-to-first-token histograms of the online calls (bucket -> count)."""
    out: dict[tuple, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for e in Event.objects.all():
        hour = e.timestamp.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        row = out[(e.project_id, e.environment_id, e.service, e.model, e.feature, hour)]
        row["requests"] += 1
        row["errors"] += e.status == "error"
        row["input_tokens"] += e.input_tokens
        row["output_tokens"] += e.output_tokens
        row["cache_read_input_tokens"] += e.cache_read_input_tokens
        row["cache_hits"] += e.cache_read_input_tokens > 0
        row["cost_usd"] += e.cost_usd or Decimal(0)
        row["unpriced_requests"] += e.cost_usd is None
        row["batch_requests"] += e.batch
        if e.batch:
            row["batch_latency_sum_ms"] += e.latency_ms
            continue
        row["latency_sum_ms"] += e.latency_ms
        hist = row.setdefault("hist", {})
        hist[bucket_of(e.latency_ms)] = hist.get(bucket_of(e.latency_ms), 0) + 1
        if e.time_to_first_token_ms is not None:
            ttft = row.setdefault("ttft", {})
            ttft[bucket_of(e.time_to_first_token_ms)] = ttft.get(bucket_of(e.time_to_first_token_ms), 0) + 1
    return out


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def hour(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)
