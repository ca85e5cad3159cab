"""The provider pages: Settings → Provider beside the other per-project settings
(/projects/<slug>/provider, admins), and Reconciliation beside the dashboards (/reconciliation,
every member, `?project=` like them)."""

from django.urls import path

from providers import views

app_name = "providers_ui"
urlpatterns = [
    path("projects/<slug:slug>/provider", views.provider_page, name="provider"),
    path("projects/<slug:slug>/provider/delete", views.provider_delete, name="provider_delete"),
    path("projects/<slug:slug>/provider/sync", views.provider_sync, name="provider_sync"),
    path("reconciliation", views.reconciliation_page, name="reconciliation"),
]
