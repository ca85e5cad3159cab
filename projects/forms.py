"""Login (rate-limited) and the project admin pages' forms (price overrides: pricing/forms.py).
Forms only parse and validate; writes go through projects.services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from projects.login_limit import login_failure_record, login_success_record, login_wait_seconds, wait_message
from projects.models import IngestKey, Membership, Project

MAX_RETENTION_DAYS = 3650


def client_ip(request: HttpRequest | None) -> str:
    # REMOTE_ADDR, not X-Forwarded-For: a client can write any X-Forwarded-For it likes, and
    # Tally's deployments (the web server straight on the port) have no proxy to trust.
    return (request.META.get("REMOTE_ADDR") or "") if request is not None else ""


class _RateLimitedLogin(AuthenticationForm):
    """Refuses an attempt while its username or IP is locked out; counts failures."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request)
        wait = login_wait_seconds(username=username, ip=ip)
        if wait:
            raise ValidationError(wait_message(wait), code="rate_limited")
        try:
            data = super().clean()
        except ValidationError:
            login_failure_record(username=username, ip=ip)
            raise
        # A form with a field missing authenticates no one and raises nothing here: only a
        # real login may clear the username's counter.
        if self.get_user() is not None:
            login_success_record(username=username, ip=ip)
        return data


class LoginForm(_RateLimitedLogin):
    pass


class AdminLoginForm(_RateLimitedLogin, AdminAuthenticationForm):
    """The Django admin's login, for superusers only (staff who aren't are told so)."""

    def confirm_login_allowed(self, user: Any) -> None:
        AuthenticationForm.confirm_login_allowed(self, user)  # active; then superuser, not just staff
        if not user.is_superuser:
            raise ValidationError(
                "The admin site is for superusers. Use the dashboard login at /login.", code="invalid_login"
            )


# --- keys -----------------------------------------------------------------------------------------


class KeyCreateForm(forms.Form):
    environment = forms.SlugField(max_length=64, help_text="e.g. prod, staging, dev (created if new).")
    scope = forms.ChoiceField(choices=IngestKey.Scope.choices, initial=IngestKey.Scope.INGEST)
    name = forms.CharField(max_length=200, required=False, help_text="Optional: what uses this key.")


# --- retention ------------------------------------------------------------------------------------


class RetentionForm(forms.Form):
    raw_retention_days = forms.IntegerField(
        min_value=1,
        max_value=MAX_RETENTION_DAYS,
        label="Keep raw events for (days)",
        help_text=f"1 to {MAX_RETENTION_DAYS}. Aggregates are kept separately, much longer.",
    )


# --- members --------------------------------------------------------------------------------------


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.VIEWER)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_username(self) -> Any:
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise ValidationError(f"No active user named {username!r}. A superuser creates accounts in /admin/.")
        if Membership.objects.filter(project=self.project, user=user).exists():
            raise ValidationError(f"{username} is already a member; change their role below.")
        return user


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
