from django.contrib import admin

from pricing.models import PriceOverride


@admin.register(PriceOverride)
class PriceOverrideAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "project",
        "effective_from",
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "batch_multiplier",
        "created_at",
    )
    list_filter = ("project",)
    search_fields = ("model", "note")
    date_hierarchy = "effective_from"
    readonly_fields = ("created_at",)
