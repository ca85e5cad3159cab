from django.apps import AppConfig


class RollupsConfig(AppConfig):
    name = "rollups"
    default_auto_field = "django.db.models.BigAutoField"
