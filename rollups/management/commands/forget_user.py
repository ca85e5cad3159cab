from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projects.selectors import project_by_slug
from rollups.services import user_forget_everywhere


class Command(BaseCommand):
    help = "Delete an end user's raw events and per-user aggregates, and re-roll the affected hours."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--user-id", required=True, help="the user_id as sent in events (or its hash)")

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_slug(slug=options["project"])
        if project is None:
            raise CommandError(f"no project {options['project']!r}")
        if not options["user_id"]:
            raise CommandError("--user-id must not be empty")
        result = user_forget_everywhere(project_id=project.pk, user_id=options["user_id"])
        self.stdout.write(
            f"deleted {result.events_deleted} events and {result.user_rows_deleted} per-user "
            f"aggregate rows; re-rolled {result.hours_rerolled} hours"
        )
