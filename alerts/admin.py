from django.contrib import admin

from alerts.models import AlertRule, Budget, DigestSubscription, Incident, ModelNotice, Notification


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "metric", "window", "condition", "threshold", "sensitivity", "enabled")
    list_filter = ("project", "metric", "condition", "enabled")


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("rule", "window_start", "opened_at", "resolved_at", "value", "threshold", "baseline", "notified")
    list_filter = ("rule__project",)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "project",
        "period",
        "limit_usd",
        "environment",
        "service",
        "user_id",
        "enabled",
        "warn_on_forecast",
    )


@admin.register(DigestSubscription)
class DigestSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("project", "enabled")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("subject", "kind", "created_at", "attempts", "sent_at", "failed_at", "last_error")
    list_filter = ("kind", "project")
    readonly_fields = [f.name for f in Notification._meta.fields]


@admin.register(ModelNotice)
class ModelNoticeAdmin(admin.ModelAdmin):
    """Read-only: deleting a row would make the next pass notify that model again, on purpose only."""

    list_display = ("model", "kind", "project", "first_hour", "environment", "service", "baseline", "created_at")
    list_filter = ("kind", "baseline", "project")
    readonly_fields = [f.name for f in ModelNotice._meta.fields]
