from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.services import DEFAULT_SYNC_DAYS, provider_usage_sync_all


class Command(BaseCommand):
    help = (
        "Pull the provider's own usage and cost reports for the last N days (default "
        f"{DEFAULT_SYNC_DAYS}) for every connected project, and return when they are stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", help="only this project (slug)")
        parser.add_argument("--days", type=int, default=DEFAULT_SYNC_DAYS, help="days back, today included")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] < 1:
            raise CommandError("--days must be at least 1")
        results = provider_usage_sync_all(project_slug=options["project"], days=options["days"])
        if not results:
            raise CommandError("no connected project" + (f" named {options['project']}" if options["project"] else ""))
        for result in results:
            if result.ok:
                self.stdout.write(
                    f"{result.project_slug}: {result.rows} day/model rows for {result.start} .. {result.end}"
                )
            else:
                self.stderr.write(f"{result.project_slug}: sync failed: {result.error}")
        failed = [r.project_slug for r in results if not r.ok]
        if failed:
            raise CommandError(f"sync failed for {', '.join(failed)} (recorded on the connection)")
