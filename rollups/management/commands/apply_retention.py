from typing import Any

from django.core.management.base import BaseCommand

from rollups.services import retention_apply


class Command(BaseCommand):
    help = "Drop raw events past each project's retention (whole day partitions where possible) and old aggregates."

    def handle(self, *args: Any, **options: Any) -> None:
        result = retention_apply()
        for name in result.partitions_dropped:
            self.stderr.write(f"dropped partition {name}")
        self.stdout.write(
            f"deleted {result.events_deleted} events in kept partitions, dropped "
            f"{len(result.partitions_dropped)} partitions, deleted {result.aggregate_rows_deleted} "
            "aggregate rows"
        )
