from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.timeutil import parse_bound
from rollups.services import rollups_verify


class Command(BaseCommand):
    help = "Recompute aggregates from raw events and compare; exits non-zero listing any difference."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="start", help="YYYY-MM-DD (inclusive) or RFC 3339; default: all")
        parser.add_argument("--to", dest="end", help="YYYY-MM-DD (inclusive) or RFC 3339; default: all")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            start = parse_bound(options["start"], end=False) if options["start"] else None
            end = parse_bound(options["end"], end=True) if options["end"] else None
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        result = rollups_verify(start=start, end=end)
        for line in result.differences or []:
            self.stdout.write(line)
        summary = (
            f"checked {result.hours_checked} hours and {result.days_checked} days; "
            f"{result.pending_hours} hours pending rollup (skipped)"
        )
        if result.differences:
            raise CommandError(f"{len(result.differences)} difference(s); {summary}")
        self.stdout.write(f"OK: {summary}")
