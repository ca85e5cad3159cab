from django.urls import path

from dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("spend", views.spend, name="spend"),
    path("latency", views.latency, name="latency"),
    path("errors", views.errors, name="errors"),
    path("cache", views.cache, name="cache"),
    path("events", views.events, name="events"),
    path("events/<int:event_id>", views.event_detail, name="event_detail"),
]
