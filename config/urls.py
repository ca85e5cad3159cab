from django.contrib import admin
from django.urls import include, path

from config.openapi import openapi_json

urlpatterns = [
    path("", include("core.urls")),
    path("api/v1/openapi.json", openapi_json, name="openapi"),
    path("api/v1/", include("ingest.urls")),
    path("api/v1/", include("rollups.urls")),
    path("api/v1/", include("alerts.urls")),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]
