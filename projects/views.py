"""Login and the project admin pages: keys, retention, members (price overrides are pricing's pages).

Every management view starts with `administered_project` (404 for a project the user can't
see, 403 for one they only view), and every object is then looked up inside that project,
so an id from another project is a 404. Writes are POST forms with CSRF.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from projects.forms import KeyCreateForm, LoginForm, MemberAddForm, MemberRoleForm, RetentionForm
from projects.models import IngestKey, Membership, Project
from projects.permissions import administered_project
from projects.selectors import project_keys, project_members
from projects.services import (
    LastAdminError,
    ingest_key_create,
    ingest_key_revoke,
    membership_add,
    membership_remove,
    membership_role_set,
    project_retention_set,
)


class _LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "rate_limited"):
            response.status_code = 429
        return response


login = _LoginView.as_view()
logout = auth_views.LogoutView.as_view()  # POST only (Django 5): a link can't log anyone out


def _page(request: HttpRequest, name: str, project: Project, status: int = 200, **context: Any) -> HttpResponse:
    return render(
        request, f"projects/{name}.html", {"current_project": project, "active": name, **context}, status=status
    )


# --- keys -----------------------------------------------------------------------------------------


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest, slug: str) -> HttpResponse:
    """List the project's keys; POST creates one and shows its secret on this response only."""
    project = administered_project(request.user, slug)
    form = KeyCreateForm(request.POST if request.method == "POST" else None)
    if not form.is_valid():
        return _page(
            request,
            "keys",
            project,
            status=400 if form.is_bound else 200,
            form=form,
            keys=project_keys(project=project),
        )
    # Rendered, not redirected: the secret exists only in this response (never_cache), so
    # there is no second view of it; the list page shows the prefix from now on.
    created = ingest_key_create(
        project_slug=project.slug,
        environment_name=form.cleaned_data["environment"],
        scope=form.cleaned_data["scope"],
        name=form.cleaned_data["name"],
    )
    return _page(request, "key_created", project, active="keys", created=created)


@login_required
@require_POST
def key_revoke(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    project = administered_project(request.user, slug)
    key = get_object_or_404(IngestKey, pk=key_id, project=project)
    ingest_key_revoke(key=key)
    messages.success(request, f"Key {key.prefix}… is revoked: requests with it are refused from now on.")
    return redirect("projects:keys", slug=project.slug)


# --- retention ------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def retention(request: HttpRequest, slug: str) -> HttpResponse:
    project = administered_project(request.user, slug)
    form = RetentionForm(
        request.POST if request.method == "POST" else None, initial={"raw_retention_days": project.raw_retention_days}
    )
    if not form.is_valid():
        return _page(request, "retention", project, status=400 if form.is_bound else 200, form=form)
    project_retention_set(project=project, raw_retention_days=form.cleaned_data["raw_retention_days"])
    messages.success(request, f"Raw events are now kept {form.cleaned_data['raw_retention_days']} days.")
    return redirect("projects:retention", slug=project.slug)


# --- members --------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, slug: str) -> HttpResponse:
    """List members; POST adds one by username."""
    project = administered_project(request.user, slug)
    form = MemberAddForm(request.POST if request.method == "POST" else None, project=project)
    if not form.is_valid():
        return _page(
            request,
            "members",
            project,
            status=400 if form.is_bound else 200,
            form=form,
            members=project_members(project=project),
            roles=Membership.Role.choices,
        )
    membership = membership_add(project=project, user=form.cleaned_data["username"], role=form.cleaned_data["role"])
    messages.success(request, f"Added {membership.user.get_username()} as {membership.role}.")
    return redirect("projects:members", slug=project.slug)


@login_required
@require_POST
def member_role(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    project = administered_project(request.user, slug)
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=membership_id, project=project)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: viewer or admin.")
        return redirect("projects:members", slug=project.slug)
    try:
        membership_role_set(membership=membership, role=form.cleaned_data["role"])
    except LastAdminError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.get_username()} is now {form.cleaned_data['role']}.")
    return redirect("projects:members", slug=project.slug)


@login_required
@require_POST
def member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    project = administered_project(request.user, slug)
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=membership_id, project=project)
    try:
        membership_remove(membership=membership)
    except LastAdminError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Removed {membership.user.get_username()} from {project.name}.")
    return redirect("projects:members", slug=project.slug)
