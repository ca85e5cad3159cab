"""`manage.py seed_demo`: realistic demo events through the ingest code path (CONTRACT §2), and the demo's
alert rules, budget and incidents over them (here, in alerts, because that composes every layer)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alerts.services import demo_seed_with_alerts


class Command(BaseCommand):
    help = "Write realistic demo events (now-relative) through the ingest code path. Re-running adds nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="days of history, at most 30 (default 30)")
        parser.add_argument("--events", type=int, default=20000, help="number of events (default 20000)")
        parser.add_argument("--project", default="demo", help="project slug (default demo)")
        parser.add_argument("--seed", type=int, default=42, help="random seed: same seed, same request ids")
        parser.add_argument(
            "--no-alerts", action="store_true", help="events only: no rollup, demo alert rules, budget or incidents"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(done: int, total: int) -> None:
            self.stderr.write(f"seed_demo: {done}/{total} events")

        try:
            summary = demo_seed_with_alerts(
                days=options["days"],
                events=options["events"],
                project_slug=options["project"],
                seed=options["seed"],
                progress=progress,
                alerts=not options["no_alerts"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for env, counts in summary["environments"].items():
            self.stderr.write(
                f"  {env}: {counts['accepted']} accepted, {counts['duplicates']} duplicates, "
                f"{counts['rejected']} rejected"
            )
        if summary.get("alerts", {}).get("created"):
            alerts = summary["alerts"]
            self.stderr.write(
                f"  demo alerts: {alerts['rules']} rules, {alerts['incidents']} incidents, "
                f"{alerts['notifications']} emails"
            )
        if summary["first_rejection"]:
            self.stderr.write(f"  first rejection: {json.dumps(summary['first_rejection'])}")
        self.stdout.write(
            f"seed_demo: project {summary['project']}, {summary['from']} .. {summary['to']}: "
            f"{summary['accepted']} accepted, {summary['duplicates']} duplicates, {summary['rejected']} rejected"
        )
