from django.urls import path

from pricing import views

app_name = "pricing"
urlpatterns = [
    path("<slug:slug>/prices", views.prices, name="prices"),
    path("<slug:slug>/prices/<int:override_id>/delete", views.price_delete, name="price_delete"),
]
