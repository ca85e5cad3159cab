from django.contrib import admin
from django.urls import include, path

from config.openapi import openapi_json
from ingest import views as ingest_views
from projects import views as projects_views

urlpatterns = [
    path("", include("core.urls")),
    path("login", projects_views.login, name="login"),
    path("logout", projects_views.logout, name="logout"),
    path("projects/", include("projects.urls")),
    path("api/v1/openapi.json", openapi_json, name="openapi"),
    path("api/v1/", include("ingest.urls")),
    path("api/v1/", include("rollups.urls")),
    path("api/v1/", include("alerts.urls")),
    path("api/v1/", include("providers.urls")),
    path("admin/", admin.site.urls),
    path("v1/traces", ingest_views.otlp_traces, name="otlp-traces"),
    path("alerts/", include("alerts.urls_ui")),
    path("", include("providers.urls_ui")),
    path("", include("dashboard.urls")),
]
