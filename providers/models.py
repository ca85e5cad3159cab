"""A project's connection to its LLM provider's own billing reports, and what they said.

The provider's figures are kept per (connection, UTC day, model) exactly as the provider
reported them (model names untouched); matching them to Tally's models happens when they
are read (providers/selectors.py), so a change of the price table's aliases needs no re-sync.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models


class ProviderConnection(models.Model):
    class Provider(models.TextChoices):
        ANTHROPIC = "anthropic", "Anthropic"

    project = models.OneToOneField("projects.Project", on_delete=models.CASCADE, related_name="provider_connection")
    provider = models.CharField(max_length=32, choices=Provider.choices, default=Provider.ANTHROPIC)
    # A Fernet token (providers/services.py): never the key itself, and never sent back out.
    admin_key_encrypted = models.TextField()
    admin_key_last4 = models.CharField(max_length=4)
    # Restrict the provider's report to these Anthropic API keys / workspaces (empty: the whole org).
    api_key_ids = ArrayField(models.CharField(max_length=128), default=list, blank=True)
    workspace_ids = ArrayField(models.CharField(max_length=128), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # The UTC days the stored figures cover, first and last inclusive. A day inside is one the
    # provider was asked about (no row for a model means it reported none); outside, unknown.
    covered_from = models.DateField(null=True, blank=True)
    covered_to = models.DateField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.provider} for {self.project_id} (…{self.admin_key_last4})"


class ProviderDailyUsage(models.Model):
    """One model's usage and cost on one UTC day, as the provider reported it."""

    connection = models.ForeignKey(ProviderConnection, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    model = models.CharField(max_length=128)  # "" for spend the provider attributes to no model
    requests = models.BigIntegerField(default=0)
    uncached_input_tokens = models.BigIntegerField(default=0)
    cache_read_input_tokens = models.BigIntegerField(default=0)
    cache_creation_5m_input_tokens = models.BigIntegerField(default=0)
    cache_creation_1h_input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    # The cost report's `amount` (post-discount, fractional cents) / 100: exact, no floats.
    cost_usd = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    synced_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "day", "model"], name="provider_daily_usage_key")]

    def __str__(self) -> str:
        return f"{self.connection_id}@{self.day} {self.model}"
