"""Page-speed benchmark: every dashboard page and the explorer's filters and orders, on one big project.

    .venv/bin/python -m devserver.embedded exec -- .venv/bin/python bench/pages.py [--events N] [--reuse] [--keep]

Builds the bench project `bench-pages` with --events events (default 10M) over 29 days with
bench/rollup.py's generator (3 environments, 4 services x 3 features, 4 models, 997 users,
errors, cache reads, unpriced calls), plus a handful of calls of one rare user (`u_rare`,
feature `appeals`), rolls everything up and VACUUM ANALYZEs (what autovacuum has long done to
past days in a running install), then times each URL below through Django's full request path
in-process: one warm-up, then --requests requests, p50/p95 server time. Target: p95 < 150 ms
each (issue 12, item 10).

With --reuse an existing bench project of the right size is timed again without rebuilding it
(building 10M events takes minutes); --keep leaves it in place for that.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("SECURE_COOKIES", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from bench import rollup  # noqa: E402  (after the path and settings above)

PROJECT = "bench-pages"
TARGET_P95_MS = 150
DAYS = 29
RARE_USER, RARE_FEATURE, RARE_CALLS = "u_rare", "appeals", 6


def cases(yesterday: str, deep_cursor: str | None) -> list[tuple[str, dict[str, str]]]:
    """(label, query) for every URL timed; all on `PROJECT`, 30 days unless they say otherwise."""
    pages = [(f"page {path}", path, {"range": "30d"}) for path in ("/", "/spend", "/latency", "/errors", "/cache")]
    out = [(label, {"_path": path, **q}) for label, path, q in pages]
    ev: list[tuple[str, dict[str, str]]] = []
    for sort in ("time", "latency", "cost", "tokens"):
        ev.append((f"explorer sort={sort}", {"sort": sort}))
    for sort in ("time", "cost"):
        ev += [
            (f"  user={RARE_USER} (6 calls) sort={sort}", {"user": RARE_USER, "sort": sort}),
            (f"  user=u_42 (~1/997 of calls) sort={sort}", {"user": "u_42", "sort": sort}),
            (f"  feature=chat sort={sort}", {"feature": "chat", "sort": sort}),
            (
                f"  service=checkout model=opus sort={sort}",
                {"service": "checkout", "model": "claude-opus-4-7", "sort": sort},
            ),
            (f"  environment=prod status=error sort={sort}", {"environment": "prod", "status": "error", "sort": sort}),
            (f"  error_type=overloaded_error sort={sort}", {"error_type": "overloaded_error", "sort": sort}),
            (f"  http_status=529 sort={sort}", {"http_status": "529", "sort": sort}),
            (f"  kind=online sort={sort}", {"kind": "online", "sort": sort}),
            (f"  min_latency_ms=2000 sort={sort}", {"min_latency_ms": "2000", "sort": sort}),
            (f"  min_cost_usd=0.01 sort={sort}", {"min_cost_usd": "0.01", "sort": sort}),
        ]
    ev += [
        (f"  user={RARE_USER} sort=latency", {"user": RARE_USER, "sort": "latency"}),
        (f"  user={RARE_USER} sort=tokens", {"user": RARE_USER, "sort": "tokens"}),
        ("  feature=chat status=error sort=latency", {"feature": "chat", "status": "error", "sort": "latency"}),
        (
            "  feature=answer yesterday sort=cost",
            {"feature": "answer", "range": "custom", "from": yesterday, "to": yesterday, "sort": "cost"},
        ),
        ("  range=24h sort=cost", {"range": "24h", "sort": "cost"}),
        ("  request_id lookup", {"request_id": f"{RARE_USER}-3"}),
        (f"  feature={RARE_FEATURE} (6 calls, no index) sort=time", {"feature": RARE_FEATURE, "sort": "time"}),
        (f"CSV user={RARE_USER}", {"user": RARE_USER, "sort": "cost", "format": "csv"}),
    ]
    if deep_cursor:
        ev.append(("  sort=cost, page after 5,000 rows", {"sort": "cost", "cursor": deep_cursor}))
    out += [(label, {"_path": "/events", "range": "30d", **q}) for label, q in ev]
    return out


def add_rare_calls(project_id: int, env_id: int, now: datetime) -> None:
    """A user (and feature) with a handful of calls spread over the range, with idempotency keys."""
    from django.db import connection

    with connection.cursor() as cursor:
        for i in range(RARE_CALLS):
            at = now - timedelta(days=i * 4 + 1, hours=i)
            cursor.execute(
                """INSERT INTO ingest_event (project_id, environment_id, request_id, "timestamp", received_at, model,
                       provider, service, feature, user_id, status, latency_ms, input_tokens, output_tokens,
                       cost_units, price_source)
                   VALUES (%s, %s, %s, %s, %s, 'claude-sonnet-4-6', 'anthropic', 'support-bot', %s, %s, 'ok', %s,
                           %s, 300, %s, 'bench')""",
                [
                    project_id,
                    env_id,
                    f"{RARE_USER}-{i}",
                    at,
                    at,
                    RARE_FEATURE,
                    RARE_USER,
                    900 + i * 100,
                    2000 + i,
                    90_000_000 + i,
                ],
            )
            cursor.execute(
                'INSERT INTO ingest_eventkey (project_id, request_id, "timestamp") VALUES (%s, %s, %s) '
                "ON CONFLICT DO NOTHING",
                [project_id, f"{RARE_USER}-{i}", at],
            )


def build(events: int) -> None:
    from django.db import connection

    from projects.models import Project
    from projects.services import environment_get_or_create, project_get_or_create
    from rollups.services import dirty_hours_rollup

    old = Project.objects.filter(slug=PROJECT).first()
    if old is not None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM ingest_event WHERE project_id = %s", [old.pk])
            cursor.execute("DELETE FROM ingest_eventkey WHERE project_id = %s", [old.pk])
            cursor.execute("DELETE FROM ingest_dirtyhour WHERE project_id = %s", [old.pk])
        old.delete()
    project = project_get_or_create(slug=PROJECT)
    envs = [environment_get_or_create(project=project, name=n).pk for n in ("prod", "staging", "dev")]
    now = datetime.now(tz=UTC) - timedelta(minutes=5)
    print(f"generating {events:,} events over {DAYS} days ...", flush=True)
    started = time.perf_counter()
    # A bulk load: the explorer's four indexes (migration 0005) are dropped during it and built
    # afterwards, as one sort each, which is many times faster than 10M random b-tree inserts
    # into each (ingest pays those per event, and bench/ingest.py measures them).
    explorer_indexes = importlib.import_module("ingest.migrations.0005_event_explorer_indexes")
    with connection.cursor() as cursor:
        cursor.execute(explorer_indexes.REVERSE)
    try:
        rollup.generate(project.pk, envs, 1, events, now, DAYS)
        add_rare_calls(project.pk, envs[0], now)
    finally:
        print(f"    {time.perf_counter() - started:,.0f} s; building the explorer's indexes ...", flush=True)
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '256MB'")
            cursor.execute(explorer_indexes.FORWARD)
            cursor.execute("ANALYZE ingest_event")
    print(f"    {time.perf_counter() - started:,.0f} s; rolling up ...", flush=True)
    started = time.perf_counter()
    rollup.mark_all_dirty(project.pk)
    dirty_hours_rollup()
    rollup.settle_aggregates()
    print(f"    {time.perf_counter() - started:,.0f} s", flush=True)


def project_events(slug: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(a.requests), 0) FROM rollups_dailyaggregate a JOIN projects_project p "
            "ON p.id = a.project_id WHERE p.slug = %s",
            [slug],
        )
        return int(cursor.fetchone()[0])


def time_url(client, url: str, requests: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    def get() -> tuple[float, int]:
        started = time.perf_counter()
        response = client.get(url)
        if response.streaming:
            rows = sum(chunk.count(b"\n") for chunk in response.streaming_content) - 1
        else:  # the explorer's rows each link to their detail page
            rows = response.content.count(b'href="/events/') if url.startswith("/events") else -1
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (url, response.status_code)
        return elapsed, rows

    _, rows = get()  # warm-up (imports, caches, this query's pages)
    times = sorted(get()[0] for _ in range(requests))
    return statistics.median(times), times[math.ceil(0.95 * len(times)) - 1], rows


def deep_cursor() -> str | None:
    """The cursor after 5,000 rows of the cost order (100 pages in), for a deep-page timing."""
    from django.http import QueryDict
    from django.utils import timezone

    from dashboard import explorer
    from dashboard.forms import filters_parse
    from projects.models import Project

    filters = filters_parse(QueryDict(f"project={PROJECT}&range=30d"), now=timezone.now())
    project = Project.objects.get(slug=PROJECT)
    selection = explorer.selection_of(
        filters, explorer.explorer_parse(QueryDict("sort=cost")), project_id=project.pk, environments={}
    )
    if selection is None:
        return None
    rows = explorer.calls_read(selection, after=None, limit=5000)
    return explorer.cursor_format("cost", rows[-1].sort_key, rows[-1].id) if rows else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per URL")
    parser.add_argument("--reuse", action="store_true", help="time an existing bench project of this size")
    parser.add_argument("--keep", action="store_true", help="keep the bench project afterwards")
    parser.add_argument("--only", default="", help="time only the cases whose label contains this")
    args = parser.parse_args()
    rollup.setup_django()
    from django.contrib.auth import get_user_model
    from django.test import Client

    have = project_events(PROJECT)
    if not (args.reuse and have == args.events + RARE_CALLS):
        build(args.events)
    else:
        print(f"reusing {PROJECT} ({have:,} events)", flush=True)
    user, _ = get_user_model().objects.get_or_create(
        username="bench-pages-admin", defaults={"is_superuser": True, "is_staff": True}
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    yesterday = (datetime.now(tz=UTC) - timedelta(days=1)).date().isoformat()
    results = []
    for label, query in cases(yesterday, deep_cursor()):
        if args.only and args.only not in label:
            continue
        path = query.pop("_path")
        url = f"{path}?{urlencode({'project': PROJECT, **query})}"
        # A query known to read the whole range gets 3 requests, not 20: at 10M events each takes seconds.
        p50, p95, rows = time_url(client, url, 3 if "no index" in label else args.requests)
        results.append((label, p50, p95, rows))
        print(f"    {label:<52}{p50:>8.0f}{p95:>8.0f}  rows {rows}", flush=True)

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'ingest_event'")
        indexes = cursor.fetchone()[0]
    print()
    print(
        f"Tally pages and explorer ({os.cpu_count()} cores; project {PROJECT}: {args.events + RARE_CALLS:,} events "
        f"over {DAYS} days; {indexes} indexes on ingest_event; {args.requests} requests each, in-process)"
    )
    print(
        f"| {'page / explorer query (30 days unless named)':<52} | {'rows':>6} | {'p50 ms':>7} | {'p95 ms':>7} | ok |"
    )
    print(f"|{'-' * 54}|{'-' * 8}|{'-' * 9}|{'-' * 9}|----|")
    for label, p50, p95, rows in results:
        ok = "yes" if p95 < TARGET_P95_MS else "NO"
        shown = "" if rows < 0 else f"{rows:,}"
        print(f"| {label.strip():<52} | {shown:>6} | {p50:>7.0f} | {p95:>7.0f} | {ok:<3}|")
    failed = [label for label, _, p95, _ in results if p95 >= TARGET_P95_MS]
    print(f"target p95 < {TARGET_P95_MS} ms: {'met by every row' if not failed else f'missed by {len(failed)}'}")
    if not args.keep:
        from projects.models import Project

        project = Project.objects.get(slug=PROJECT)
        print("cleaning up ...", flush=True)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM ingest_event WHERE project_id = %s", [project.pk])
            cursor.execute("DELETE FROM ingest_eventkey WHERE project_id = %s", [project.pk])
            cursor.execute("DELETE FROM ingest_dirtyhour WHERE project_id = %s", [project.pk])
        project.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
