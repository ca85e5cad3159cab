"""Reads for prices."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pricing.models import PriceOverride
from pricing.services import DEFAULT_PROVIDER, _model_info

if TYPE_CHECKING:
    from projects.models import Project


def price_overrides_of(*, project: Project) -> list[PriceOverride]:
    return list(PriceOverride.objects.filter(project=project).order_by("model", "-effective_from"))


def model_canonical(*, model: str, provider: str = DEFAULT_PROVIDER) -> str:
    """The price table's id of `model`, so a dated id and its short alias
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5") compare equal; unknown models stay as given.
    Uses the same lookup pricing does (cached), so names match exactly when prices would."""
    found = _model_info(provider, model) if model else None
    return found[0].id if found is not None else model
