from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ProjectsConfig(AppConfig):
    name = "projects"
    default_auto_field = "django.db.models.BigAutoField"
    default = True


class TallyAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site (projects/admin_site.py): superusers only."""

    default = False
    default_site = "projects.admin_site.TallyAdminSite"
