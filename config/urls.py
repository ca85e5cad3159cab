from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("core.urls")),
    path("api/v1/", include("ingest.urls")),
    path("api/v1/", include("rollups.urls")),
    path("api/v1/", include("alerts.urls")),
    path("admin/", admin.site.urls),
]
