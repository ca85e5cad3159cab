"""Rollup and page-speed benchmark, one run, one database.

    .venv/bin/python -m devserver.embedded exec -- .venv/bin/python bench/rollup.py [--small N] [--large N]

(`make bench` runs it after bench/ingest.py.) What is measured, in this order:

(a) COPY     rows/s of psycopg `copy.write_row` into a scratch table shaped like ingest_event:
             the raw-write reference on this database.
(b) rollup   events/s re-rolling --small events (default 1M, over 30 days) from raw: every hour
             is marked dirty and `dirty_hours_rollup()` recomputes hours, days, slices and user
             spend, as the periodic task does (TALLY_ROLLUP_LANES lanes, default 2, each on its own
             connection and share of the days). Target >= 200k events/s, printed beside the
             ratio rollup/COPY.
(c) overview server time of GET / (the overview page, 30-day range) through Django's full
             request path in-process, p50/p95 of 20 requests, with --small events and again after
             growing the project to --large events (default 10M). Target p95 < 150 ms, and the
             large/small ratio <= 1.5: pages read aggregates, so they must not grow with raw rows.

Events are generated in PostgreSQL (INSERT ... SELECT generate_series) into the bench project
`bench-rollup`, then VACUUMed (hint bits, visibility map, statistics: what autovacuum has long
done to past days' events in a running install), and the aggregate tables are VACUUM ANALYZEd
before the page timings (what autovacuum does within a minute of a pass): 3 environments, 4 services x 3 features,
4 models, latencies lognormal-ish, errors, cache reads, a few unpriced calls, 5% Message Batches
results (10-60 min turnaround) and a time to first token on half the online calls. The project is deleted at the end (--keep keeps it).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("SECURE_COOKIES", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")

PROJECT = "bench-rollup"
SCRATCH = "bench_rollup_copy_scratch"
TARGET_ROLLUP_EPS = 200_000
TARGET_P95_MS = 150
TARGET_GROWTH = 1.5

# Server-side generation: a row per number, spread uniformly over `days` days before `now`.
GENERATE_SQL = """
INSERT INTO ingest_event (project_id, environment_id, request_id, "timestamp", received_at, model, provider,
    service, feature, user_id, status, error_type, http_status, batch, latency_ms, time_to_first_token_ms,
    input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens, cache_write_5m_tokens, cost_units, cache_savings_units,
    price_source)
SELECT %(project)s,
       (%(envs)s::bigint[])[1 + (g %% 3)],
       %(prefix)s || g,
       %(now)s - (random() * %(days)s * interval '1 day'),
       %(now)s,
       (ARRAY['claude-sonnet-4-6','claude-haiku-4-5','claude-opus-4-7','claude-experimental-x'])[1 + (g %% 4)],
       'anthropic',
       (ARRAY['search','support-bot','checkout','summarizer'])[1 + ((g / 4) %% 4)],
       (ARRAY['','answer','chat'])[1 + ((g / 16) %% 3)],
       'u_' || (g %% 997),
       CASE WHEN g %% 37 = 0 THEN 'error' ELSE 'ok' END,
       CASE WHEN g %% 37 = 0 THEN 'overloaded_error' ELSE '' END,
       CASE WHEN g %% 37 = 0 THEN 529 ELSE 200 END,
       g %% 20 = 7,
       CASE WHEN g %% 20 = 7 THEN 600000 + random() * 3000000 ELSE exp(6.5 + random() * 1.5) END,
       CASE WHEN g %% 2 = 0 AND g %% 20 <> 7 THEN exp(5 + random() * 1.5) END,
       500 + (g %% 3000), 50 + (g %% 700),
       CASE WHEN g %% 3 = 0 THEN 4000 ELSE 0 END,
       CASE WHEN g %% 50 = 0 THEN 1000 ELSE 0 END,
       CASE WHEN g %% 50 = 0 THEN 1000 ELSE 0 END,
       CASE WHEN g %% 4 = 3 THEN NULL ELSE 10000000 + (g %% 100) * 1000000 END,
       CASE WHEN g %% 3 = 0 THEN 10000000 ELSE 0 END,
       'bench'
FROM generate_series(%(first)s, %(last)s) AS g
"""


def setup_django() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def bench_copy(n: int) -> float:
    from django.db import connection

    now = datetime.now(tz=UTC)
    rows = [
        (
            1,
            1,
            f"copy-{i}",
            now - timedelta(seconds=i),
            now,
            "claude-sonnet-4-6",
            "anthropic",
            "search",
            "",
            "",
            "ok",
            "",
            200,
            812.5,
            1200,
            300,
            0,
            0,
            0,
            45_000_000,
            "bench",
        )
        for i in range(n)
    ]
    cols = (
        'project_id, environment_id, request_id, "timestamp", received_at, model, provider, service, feature, '
        "user_id, status, error_type, http_status, latency_ms, input_tokens, output_tokens, "
        "cache_read_input_tokens, cache_creation_input_tokens, cache_write_5m_tokens, cost_units, price_source"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        cursor.execute(
            f"CREATE TABLE {SCRATCH} (LIKE ingest_event INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED)"
        )
        cursor.execute(f'CREATE INDEX ON {SCRATCH} (project_id, "timestamp")')
        started = time.perf_counter()
        with cursor.cursor.copy(f"COPY {SCRATCH} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        elapsed = time.perf_counter() - started
        cursor.execute(f"DROP TABLE {SCRATCH}")
    return n / elapsed


def generate(project_id: int, envs: list[int], first: int, last: int, now: datetime, days: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        step = 1_000_000
        for lo in range(first, last + 1, step):
            hi = min(last, lo + step - 1)
            cursor.execute(
                GENERATE_SQL,
                {
                    "project": project_id,
                    "envs": envs,
                    "prefix": "b-",
                    "now": now,
                    "days": days,
                    "first": lo,
                    "last": hi,
                },
            )
            print(f"    generated {hi - first + 1:,} / {last - first + 1:,}", flush=True)
        # Settle the bulk load as autovacuum long has for events of past days (hint bits,
        # visibility map, statistics), so the first read is not also the first write.
        cursor.execute("VACUUM (ANALYZE) ingest_event")


def settle_aggregates() -> None:
    """What autovacuum does within a minute of a rollup pass: statistics for the pages' planner."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM (ANALYZE) rollups_hourlyaggregate, rollups_dailyaggregate, rollups_dailyslice, "
            "rollups_dailyuserspend"
        )


def mark_all_dirty(project_id: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO ingest_dirtyhour (project_id, hour_start, created_at)
               SELECT DISTINCT %s, date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', now()
               FROM ingest_event WHERE project_id = %s""",
            [project_id, project_id],
        )
        return cursor.rowcount


def bench_rollup(project_id: int, events: int) -> tuple[float, int]:
    from rollups.services import dirty_hours_rollup

    hours = mark_all_dirty(project_id)
    started = time.perf_counter()
    dirty_hours_rollup()
    return events / (time.perf_counter() - started), hours


def bench_overview(slug: str, requests: int = 20) -> tuple[float, float]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench-rollup-admin", defaults={"is_superuser": True, "is_staff": True}
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    url = f"/?project={slug}&range=30d"
    assert client.get(url).status_code == 200  # warm-up (imports, caches)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    times.sort()
    return statistics.median(times), times[math.ceil(0.95 * len(times)) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1_000_000, help="events for the rollup and first page run")
    parser.add_argument("--large", type=int, default=10_000_000, help="events for the second page run")
    parser.add_argument("--copy-rows", type=int, default=300_000)
    parser.add_argument("--keep", action="store_true", help="keep the bench project")
    args = parser.parse_args()
    setup_django()
    from django.db import connection

    from projects.models import Project
    from projects.services import environment_get_or_create, project_get_or_create

    Project.objects.filter(slug=PROJECT).delete()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ingest_event WHERE price_source = 'bench'")
    project = project_get_or_create(slug=PROJECT)
    envs = [environment_get_or_create(project=project, name=n).pk for n in ("prod", "staging", "dev")]
    now = datetime.now(tz=UTC) - timedelta(minutes=5)
    days = 29

    print(f"(a) COPY {args.copy_rows:,} rows into a scratch table ...", flush=True)
    copy_rps = bench_copy(args.copy_rows)
    print(f"(b) generating {args.small:,} events over {days} days, then re-rolling every hour ...", flush=True)
    generate(project.pk, envs, 1, args.small, now, days)
    rollup_eps, hours = bench_rollup(project.pk, args.small)
    print(f"(c) overview page with {args.small:,} events ...", flush=True)
    settle_aggregates()
    small_p50, small_p95 = bench_overview(PROJECT)
    print(f"    growing to {args.large:,} events ...", flush=True)
    generate(project.pk, envs, args.small + 1, args.large, now, days)
    print("    rolling up the new events ...", flush=True)
    mark_all_dirty(project.pk)
    from rollups.services import dirty_hours_rollup

    dirty_hours_rollup()
    settle_aggregates()
    large_p50, large_p95 = bench_overview(PROJECT)
    growth = large_p95 / small_p95 if small_p95 else float("nan")

    def ok(flag: bool) -> str:
        return "yes" if flag else "NO"

    print()
    from django.conf import settings

    print(
        f"Tally rollup benchmark ({os.cpu_count()} cores; {hours:,} project-hours; "
        f"{settings.TALLY_ROLLUP_LANES} rollup lanes)"
    )
    print(f"{'measure':<44}{'measured':>14}{'target':>14}  ok")
    print(f"{'(a) COPY rows/s':<44}{copy_rps:>14,.0f}")
    print(
        f"{'(b) rollup events/s (re-roll ' + format(args.small, ',') + ')':<44}{rollup_eps:>14,.0f}"
        f"{'>= 200,000':>14}  {ok(rollup_eps >= TARGET_ROLLUP_EPS)}"
    )
    print(f"{'    ratio rollup / COPY':<44}{rollup_eps / copy_rps:>14.2f}")
    print(
        f"{'(c) overview p50 / p95 ms, ' + format(args.small, ',') + ' events':<44}"
        f"{f'{small_p50:.0f} / {small_p95:.0f}':>14}{'p95 < 150':>14}  {ok(small_p95 < TARGET_P95_MS)}"
    )
    print(
        f"{'    overview p50 / p95 ms, ' + format(args.large, ',') + ' events':<44}"
        f"{f'{large_p50:.0f} / {large_p95:.0f}':>14}{'p95 < 150':>14}  {ok(large_p95 < TARGET_P95_MS)}"
    )
    print(f"{'    p95 ratio large / small':<44}{growth:>14.2f}{'<= 1.5':>14}  {ok(growth <= TARGET_GROWTH)}")
    if not args.keep:
        print("cleaning up ...", flush=True)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM ingest_event WHERE project_id = %s", [project.pk])
            cursor.execute("DELETE FROM ingest_dirtyhour WHERE project_id = %s", [project.pk])
        Project.objects.filter(pk=project.pk).delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
