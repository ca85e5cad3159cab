from django.urls import path

from rollups import views

app_name = "rollups"
urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
]
