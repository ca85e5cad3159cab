"""The provider pages, mounted under /projects/ beside the other per-project settings."""

from django.urls import path

from providers import views

app_name = "providers_ui"
urlpatterns = [
    path("<slug:slug>/provider", views.provider_page, name="provider"),
    path("<slug:slug>/provider/delete", views.provider_delete, name="provider_delete"),
    path("<slug:slug>/provider/sync", views.provider_sync, name="provider_sync"),
    path("<slug:slug>/reconciliation", views.reconciliation_page, name="reconciliation"),
]
