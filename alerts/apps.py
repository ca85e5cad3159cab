from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The outbox schedules "alerts.send_notifications" by name (it sits below tasks, so it
        # cannot import them). Registering the tasks in every process lets that name resolve to
        # the task itself: run eagerly under the test settings, sent to the broker otherwise.
        from alerts import tasks  # noqa: F401
