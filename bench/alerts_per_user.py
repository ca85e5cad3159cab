"""Per-user alert rule benchmark (issue 15): how long judging "any single user over $5 today" takes.

    .venv/bin/python -m devserver.embedded exec -- .venv/bin/python bench/alerts_per_user.py [--users N ...]

(`make bench` runs it after bench/rollup.py.) For each scale (default 10,000 and 100,000 distinct
users a day), the bench project's per-user daily spend rows are written straight into the rollup
table `rollups_dailyuserspend` with one INSERT ... SELECT generate_series (what a rollup of that
day's events would leave there; no raw events are generated, since a per-user rule never reads
them), for today and yesterday (the rule judges the last closed day and the current one), then
VACUUM ANALYZEd. One user in 1,000 spends over $5 a day; the others spend $0.01 to $2.00.
Each scale runs twice: a project with one environment (a user's day is one row: a filtered scan),
and one with three where every 10th user also has a row in a second environment (rows are summed
per user across environments: the grouped query, with the T/k pre-filter of
rollups.selectors.users_breaching, which here keeps the ~17% of users with a row over $1.67).
Then, for a `per: user_id`, `cost_usd` above $5, `window: day` rule:

(a) judge      alerts.selectors.per_breaching: the one grouped query (HAVING in SQL) that returns
               the breaching users only. Median of --runs runs.
(b) first pass rule_evaluate with no open incident: judge, open one incident per breaching user
               (one INSERT ... ON CONFLICT) and queue the one message. Once (it opens them).
(c) steady     rule_evaluate with those incidents open (judge, resolve none, refresh values,
               insert nothing): what every later rollup pass costs. Median of --runs runs.

Printed per scale, with the ratio 100k / 10k (the work should grow with the rows of the day
read, linearly at worst, and not with anything per user in Python). The project is deleted at
the end (--keep keeps it). The message queued by (b) is deleted with the project; its send
task, if a broker is up, finds nothing to send.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("SECURE_COOKIES", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")

PROJECT = "bench-alerts-per-user"
HEAVY_EVERY = 1000  # one user in this many spends over the threshold

# Spend in USD: the heavy users $5.01 to $15.00, the others $0.01 to $2.00 (deterministic in g).
FILL_SQL = """
INSERT INTO rollups_dailyuserspend (project_id, environment_id, user_id, day, requests, errors, cost_usd,
                                    unpriced_requests)
SELECT %(project)s, %(env)s, 'u_' || g, d::date, 1 + g %% 40, (g %% 37 = 0)::int,
       CASE WHEN g %% %(heavy)s = 0 THEN 5.01 + (g / %(heavy)s %% 1000) / 100.0 ELSE 0.01 + (g %% 200) / 100.0 END,
       0
FROM generate_series(1, %(users)s) AS g, unnest(%(days)s::date[]) AS d
WHERE g %% %(every)s = 0
"""


def setup_django() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def bench_scale(project_id: int, env_ids: list[int], users: int, runs: int, now: datetime) -> dict[str, Any]:
    """Every user in the first environment; with more, every 10th user also in the second."""
    from django.db import connection

    from alerts.models import AlertRule, Incident, Notification
    from alerts.selectors import per_breaching
    from alerts.services import rule_evaluate
    from projects.models import Environment

    today = now.date()
    Environment.objects.filter(project_id=project_id).exclude(pk__in=env_ids).delete()
    rows = users * 2
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM rollups_dailyuserspend WHERE project_id = %s", [project_id])
        fill = {"project": project_id, "users": users, "heavy": HEAVY_EVERY, "days": [today - timedelta(days=1), today]}
        cursor.execute(FILL_SQL, {**fill, "env": env_ids[0], "every": 1})
        if len(env_ids) > 1:
            cursor.execute(FILL_SQL, {**fill, "env": env_ids[1], "every": 10})
            rows += users // 10 * 2
        cursor.execute("VACUUM ANALYZE rollups_dailyuserspend")
    AlertRule.objects.filter(project_id=project_id).delete()
    rule = AlertRule.objects.create(
        project_id=project_id,
        name="Any single user over $5 a day",
        metric="cost_usd",
        window="day",
        condition="above",
        threshold=5.0,
        per="user_id",
        recipients=["bench@example.com"],
        cooldown_minutes=60,
    )
    per_breaching(rule, now=now)  # warm: plan cache, buffers
    judge = [timed(lambda: per_breaching(rule, now=now)) for _ in range(runs)]
    breaching = len(per_breaching(rule, now=now))
    first = timed(lambda: rule_evaluate(rule=rule, now=now))
    opened = Incident.objects.filter(rule=rule, resolved_at__isnull=True).count()
    steady = [timed(lambda: rule_evaluate(rule=rule, now=now)) for _ in range(runs)]
    messages = Notification.objects.filter(project_id=project_id).count()
    return {
        "users": users,
        "environments": len(env_ids),
        "rows": rows,
        "breaching": breaching,
        "opened": opened,
        "messages": messages,
        "judge": statistics.median(judge),
        "first": first,
        "steady": statistics.median(steady),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000], help="distinct users a day")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the bench project")
    args = parser.parse_args()
    setup_django()
    from projects.models import Project
    from projects.services import environment_get_or_create, project_get_or_create

    Project.objects.filter(slug=PROJECT).delete()
    project = project_get_or_create(slug=PROJECT)
    now = datetime.now(tz=UTC)
    results = []
    try:
        for environments in (["prod"], ["prod", "staging", "dev"]):
            env_ids = [environment_get_or_create(project=project, name=n).pk for n in environments]
            for users in args.users:
                print(
                    f"{users:,} users, {len(env_ids)} environment(s): writing their per-user spend rows and "
                    f"judging ...",
                    flush=True,
                )
                results.append(bench_scale(project.pk, env_ids, users, args.runs, now))
    finally:
        if not args.keep:
            Project.objects.filter(pk=project.pk).delete()

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(
        f"Tally per-user alert rule benchmark ({os.cpu_count()} cores, load average {load}; "
        f"median of {args.runs} runs; one user in {HEAVY_EVERY:,} over $5)"
    )
    print(
        f"{'envs':>5}{'users/day':>10}{'rows read':>11}{'breaching':>11}{'(a) judge ms':>14}{'(b) first pass ms':>19}"
        f"{'(c) steady ms':>15}{'incidents':>11}{'messages':>10}"
    )
    for r in results:
        print(
            f"{r['environments']:>5}{r['users']:>10,}{r['rows']:>11,}{r['breaching']:>11,}{r['judge']:>14.1f}"
            f"{r['first']:>19.1f}"
            f"{r['steady']:>15.1f}{r['opened']:>11,}{r['messages']:>10,}"
        )
    for environments in sorted({r["environments"] for r in results}):
        same = [r for r in results if r["environments"] == environments]
        if len(same) >= 2:
            small, large = same[0], same[-1]
            print(
                f"{environments} env: ratio {large['users']:,} / {small['users']:,} users "
                f"(x{large['users'] / small['users']:g}): judge {large['judge'] / small['judge']:.2f}, "
                f"steady pass {large['steady'] / small['steady']:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
