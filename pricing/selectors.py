"""Reads for prices."""

from __future__ import annotations

from pricing.models import PriceOverride
from projects.models import Project


def price_overrides_of(*, project: Project) -> list[PriceOverride]:
    return list(PriceOverride.objects.filter(project=project).order_by("model", "-effective_from"))
