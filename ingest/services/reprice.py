"""Re-pricing of stored events after prices or overrides changed.

Invariants:
- A project-day's changed events and the dirty-hour markers of their hours commit together, so
  the rollup re-counts exactly the hours whose cost moved.
- Idempotent: an event whose price is already current is left alone, so a re-run after an
  interruption only does what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction

from pricing.services import Pricer


@dataclass
class RepriceResult:
    examined: int = 0
    changed: int = 0


_REPRICE_SELECT = """
SELECT "timestamp", id, model, provider, input_tokens, output_tokens, cache_read_input_tokens,
       cache_write_5m_tokens, cache_write_1h_tokens, batch, cost_usd, price_source, cache_savings_usd
FROM ingest_event WHERE project_id = %s AND "timestamp" >= %s AND "timestamp" < %s
"""
_REPRICE_UPDATE = """
WITH u AS (
    SELECT * FROM unnest(%s::timestamptz[], %s::int8[], %s::numeric[], %s::text[], %s::numeric[])
        AS u(ts, id, cost, source, savings)
), upd AS (
    UPDATE ingest_event e SET cost_units = (u.cost * 10000000000)::bigint, price_source = u.source,
                              cache_savings_units = (u.savings * 10000000000)::bigint
    FROM u WHERE e."timestamp" = u.ts AND e.id = u.id AND e.project_id = %s
    RETURNING date_trunc('hour', e."timestamp" AT TIME ZONE 'UTC') AS hour_start
)
INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at)
SELECT DISTINCT %s, hour_start AT TIME ZONE 'UTC', now() FROM upd
"""


def events_reprice(
    *, start: datetime, end: datetime, project_id: int | None = None, progress: Callable[[str], None] | None = None
) -> RepriceResult:
    """Re-price stored events with `start <= timestamp < end` after prices or overrides changed.

    Works one project-day at a time, each in its own transaction: changed events and the
    dirty-hour markers of their hours commit together, so the rollup re-counts exactly
    the hours whose cost moved. Safe to interrupt and re-run (idempotent: an event whose
    price is already current is left alone).
    """
    from projects.selectors import projects_by_id

    result = RepriceResult()
    for project in projects_by_id(project_id=project_id):
        pricer = Pricer(project_id=project.pk)
        day_start = start
        while day_start < end:
            day_end = min(end, datetime.combine(day_start.date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1))
            examined, changed = _reprice_window(project.pk, pricer, day_start, day_end)
            result.examined += examined
            result.changed += changed
            if progress and examined:
                progress(f"{project.slug} {day_start:%Y-%m-%d}: {examined} events, {changed} re-priced")
            day_start = day_end
    return result


def _reprice_window(project_id: int, pricer: Pricer, start: datetime, end: datetime) -> tuple[int, int]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_REPRICE_SELECT, [project_id, start, end])
        rows = cursor.fetchall()
        ts_col: list[datetime] = []
        id_col: list[int] = []
        cost_col: list[Decimal | None] = []
        source_col: list[str] = []
        savings_col: list[Decimal | None] = []
        for ts, event_id, model, provider, inp, out, cread, w5m, w1h, batch, cost, source, savings in rows:
            price = pricer.price(
                model=model,
                provider=provider,
                timestamp=ts,
                input_tokens=inp,
                output_tokens=out,
                cache_read_input_tokens=cread,
                cache_write_5m_tokens=w5m,
                cache_write_1h_tokens=w1h,
                batch=batch,
            )
            if price.cost_usd != cost or price.source != source or price.cache_savings_usd != savings:
                ts_col.append(ts)
                id_col.append(event_id)
                cost_col.append(price.cost_usd)
                source_col.append(price.source)
                savings_col.append(price.cache_savings_usd)
        if id_col:
            cursor.execute(_REPRICE_UPDATE, [ts_col, id_col, cost_col, source_col, savings_col, project_id, project_id])
    return len(rows), len(id_col)
