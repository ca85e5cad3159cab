"""Who may see and manage which project. Every page and API asks here.

- A superuser is an admin of every project.
- Otherwise a user sees the projects they are a member of (viewer or admin), and manages
  those where they are admin.
- Keys carry their own project and scope (projects.selectors.key_from_bearer).
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from projects.models import Membership, Project

# Whoever `request.user` is: signed in, or the AnonymousUser that sees nothing.
RequestUser = User | AnonymousUser


def visible_projects(user: RequestUser) -> QuerySet[Project]:
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def admin_projects(user: RequestUser) -> QuerySet[Project]:
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user, memberships__role=Membership.Role.ADMIN).distinct()


def is_project_admin(user: RequestUser, project: Project) -> bool:
    return admin_projects(user).filter(pk=project.pk).exists()


def can_view(user: RequestUser, project: Project) -> bool:
    return visible_projects(user).filter(pk=project.pk).exists()


def administered_project(user: RequestUser, slug: str) -> Project:
    """The project `slug` for a page that manages it: 404 unless the user can see it (no hint
    that someone else's project exists), 403 if they see it but aren't its admin."""
    project = visible_projects(user).filter(slug=slug).first()
    if project is None:
        raise Http404("No such project.")
    if not is_project_admin(user, project):
        raise PermissionDenied("Only admins of this project can manage it.")
    return project
