from django.urls import path

from projects import views

app_name = "projects"
urlpatterns = [
    path("<slug:slug>/keys", views.keys, name="keys"),
    path("<slug:slug>/keys/<int:key_id>/revoke", views.key_revoke, name="key_revoke"),
    path("<slug:slug>/retention", views.retention, name="retention"),
    path("<slug:slug>/members", views.members, name="members"),
    path("<slug:slug>/members/<int:membership_id>", views.member_role, name="member_role"),
    path("<slug:slug>/members/<int:membership_id>/remove", views.member_remove, name="member_remove"),
]
