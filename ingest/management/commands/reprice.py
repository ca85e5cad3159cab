from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.timeutil import parse_bound
from ingest.services import events_reprice
from projects.selectors import project_by_slug


class Command(BaseCommand):
    help = "Re-price stored events after prices or price overrides changed; marks their hours for re-rollup."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD (inclusive) or RFC 3339")
        parser.add_argument("--to", dest="end", required=True, help="YYYY-MM-DD (inclusive) or RFC 3339")
        parser.add_argument("--project", help="project slug (default: all projects)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            start, end = parse_bound(options["start"], end=False), parse_bound(options["end"], end=True)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if end <= start:
            raise CommandError("--to must not be before --from")
        project_id = None
        if options["project"]:
            project = project_by_slug(slug=options["project"])
            if project is None:
                raise CommandError(f"no project {options['project']!r}")
            project_id = project.pk
        result = events_reprice(
            start=start, end=end, project_id=project_id, progress=lambda msg: self.stderr.write(msg)
        )
        self.stdout.write(f"examined {result.examined} events, re-priced {result.changed}")
