from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.services import events_reprice
from projects.models import Project


def parse_bound(value: str, *, end: bool) -> datetime:
    """YYYY-MM-DD (inclusive day, UTC) or an RFC 3339 time."""
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)  # noqa: DTZ007 - tz set here
            return day + timedelta(days=1) if end else day
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} is neither YYYY-MM-DD nor an RFC 3339 time") from exc
    if parsed.tzinfo is None:
        raise CommandError(f"{value!r} needs a UTC offset")
    return parsed


class Command(BaseCommand):
    help = "Re-price stored events after prices or price overrides changed; marks their hours for re-rollup."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD (inclusive) or RFC 3339")
        parser.add_argument("--to", dest="end", required=True, help="YYYY-MM-DD (inclusive) or RFC 3339")
        parser.add_argument("--project", help="project slug (default: all projects)")

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = parse_bound(options["start"], end=False), parse_bound(options["end"], end=True)
        if end <= start:
            raise CommandError("--to must not be before --from")
        project_id = None
        if options["project"]:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"no project {options['project']!r}")
            project_id = project.pk
        result = events_reprice(start=start, end=end, project_id=project_id,
                                progress=lambda msg: self.stderr.write(msg))
        self.stdout.write(f"examined {result.examined} events, re-priced {result.changed}")
