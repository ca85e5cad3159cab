from django.contrib import admin
from django.http import HttpRequest

from projects.models import Environment, IngestKey, Membership, Project


class EnvironmentInline(admin.TabularInline):
    model = Environment
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "raw_retention_days", "created_at")
    search_fields = ("slug", "name")
    inlines = [EnvironmentInline]


@admin.register(IngestKey)
class IngestKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "project", "environment", "scope", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("scope", "project")
    # The secret is never stored; keys are created with `manage.py create_ingest_key`.
    readonly_fields = ("key_hash", "prefix", "created_at", "last_used_at")
    fields = (
        "project",
        "environment",
        "scope",
        "name",
        "prefix",
        "key_hash",
        "created_at",
        "last_used_at",
        "revoked_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "project", "role", "created_at")
    list_filter = ("role", "project")
