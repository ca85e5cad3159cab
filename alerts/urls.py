from django.urls import path

from alerts import views

app_name = "alerts"
urlpatterns = [
    path("alert-rules", views.alert_rules, name="rules"),
    path("alert-rules/<int:rule_id>", views.alert_rule, name="rule"),
    path("budgets", views.budgets, name="budgets"),
    path("budgets/<int:budget_id>", views.budget, name="budget"),
    path("budgets/status", views.budget_status, name="budget-status"),
]
