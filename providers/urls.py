"""The provider JSON API, mounted under /api/v1/ (CONTRACT §7)."""

from django.urls import path

from providers import views

app_name = "providers"
urlpatterns = [
    path("provider-connection", views.provider_connection, name="connection"),
    path("reconciliation", views.reconciliation, name="reconciliation"),
]
