"""Per-project price overrides (see pricing/services.py for how they are applied)."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

from django.db import models
from django.db.models import Q


class PriceOverride(models.Model):
    """A negotiated or custom per-MTok price for one model (or a model-id prefix) in one project.

    Applies to the project's events with `timestamp >= effective_from`. Among the overrides that
    match an event, an exact model match beats a prefix and a longer prefix beats a shorter one;
    within the same pattern the latest `effective_from` not after the event wins. Overrides take
    precedence over genai-prices. Existing events keep their stored cost until `manage.py reprice`.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="price_overrides")
    model = models.CharField(
        max_length=128,
        help_text='Exact model id, or a prefix ending in "*" (e.g. "claude-sonnet-4-6*").',
    )
    effective_from = models.DateTimeField(help_text="UTC; applies to events at or after this instant.")
    input_usd_per_mtok = models.DecimalField(
        max_digits=14, decimal_places=6, help_text="Uncached input, USD per million tokens."
    )
    output_usd_per_mtok = models.DecimalField(max_digits=14, decimal_places=6)
    # Null means "the standard Anthropic multiplier of the input price": 0.1x read, 1.25x
    # 5-minute write, 2x 1-hour write (pricing.services.DEFAULT_*_MULTIPLIER).
    cache_read_usd_per_mtok = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cache_write_5m_usd_per_mtok = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cache_write_1h_usd_per_mtok = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    batch_multiplier = models.DecimalField(
        max_digits=6,
        decimal_places=4,
        default=Decimal("0.5"),
        help_text="Applied to the whole cost of Message Batches calls (Anthropic: 0.5).",
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "model", "-effective_from"]
        constraints = [
            # Two overrides for the same pattern and instant would make the winner arbitrary.
            models.UniqueConstraint(fields=["project", "model", "effective_from"], name="priceoverride_unique_start"),
            # "*" only as the last character: anything else would look like a glob we don't support.
            models.CheckConstraint(condition=~Q(model__regex=r"\*."), name="priceoverride_star_only_at_end"),
            models.CheckConstraint(
                condition=Q(input_usd_per_mtok__gte=0)
                & Q(output_usd_per_mtok__gte=0)
                & (Q(cache_read_usd_per_mtok__isnull=True) | Q(cache_read_usd_per_mtok__gte=0))
                & (Q(cache_write_5m_usd_per_mtok__isnull=True) | Q(cache_write_5m_usd_per_mtok__gte=0))
                & (Q(cache_write_1h_usd_per_mtok__isnull=True) | Q(cache_write_1h_usd_per_mtok__gte=0))
                & Q(batch_multiplier__gte=0),
                name="priceoverride_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from.astimezone(UTC):%Y-%m-%d %H:%M}Z"

    @property
    def is_prefix(self) -> bool:
        return self.model.endswith("*")
