"""The alerts pages, mounted at /alerts/ (the JSON API is alerts/urls.py under /api/v1/)."""

from django.urls import path

from alerts import views

app_name = "alerts_ui"
urlpatterns = [
    path("", views.rules_page, name="rules"),
    path("new", views.rule_create, name="rule_create"),
    path("<int:rule_id>/", views.rule_history, name="rule"),
    path("<int:rule_id>/edit", views.rule_edit, name="rule_edit"),
    path("<int:rule_id>/test", views.rule_test, name="rule_test"),
    path("<int:rule_id>/enabled", views.rule_toggle, name="rule_toggle"),
    path("<int:rule_id>/delete", views.rule_delete, name="rule_delete"),
    path("budgets/", views.budgets_page, name="budgets"),
    path("budgets/<int:budget_id>/delete", views.budget_delete, name="budget_delete"),
    path("digest/", views.digest_page, name="digest"),
    path("digest/test", views.digest_test, name="digest_test"),
    path("outbox/", views.outbox_page, name="outbox"),
    path("outbox/<int:notification_id>/", views.notification_page, name="notification"),
]
