"""The Django admin, for superusers only: staff without superuser status are refused at login
and on every admin page. Everyone else manages their projects on the project pages."""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.http import HttpRequest

from projects.forms import AdminLoginForm


class TallyAdminSite(AdminSite):
    site_header = "Tally admin"
    site_title = "Tally admin"
    login_form = AdminLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)
