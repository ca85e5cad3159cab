from django.urls import path

from ingest import views

app_name = "ingest"
urlpatterns = [
    path("events", views.events_post, name="events"),
]
