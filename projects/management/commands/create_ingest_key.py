from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projects.models import IngestKey
from projects.services import ingest_key_create


class Command(BaseCommand):
    help = "Create a key for a project and environment (both created if missing). The secret is the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--environment", required=True, help="environment name, e.g. prod")
        parser.add_argument("--scope", default=IngestKey.Scope.INGEST, choices=IngestKey.Scope.values)
        parser.add_argument("--name", default="", help="a label for humans")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = ingest_key_create(
                project_slug=options["project"],
                environment_name=options["environment"],
                scope=options["scope"],
                name=options["name"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        key = created.key
        self.stderr.write(
            f"Created {key.scope} key {key.prefix}… for {key.project.slug}/{key.environment.name}. "
            "It is shown once; store it now."
        )
        self.stdout.write(created.secret)
