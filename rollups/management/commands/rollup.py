from typing import Any

from django.core.management.base import BaseCommand

from rollups.services import rollup_until_current


class Command(BaseCommand):
    help = "Run rollup passes now; returns when every event committed before it started is in the aggregates."

    def handle(self, *args: Any, **options: Any) -> None:
        result = rollup_until_current(progress=lambda msg: self.stderr.write(msg))
        self.stdout.write(f"rolled up {result.hours} hours and {result.days} days in {result.passes} batches")
