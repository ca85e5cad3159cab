from django.urls import path

from rollups import views

app_name = "rollups"
urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("users/forget", views.user_forget, name="user-forget"),
]
