"""`{% load projects_access %}` then `{% if user|is_project_admin:project %}`: show management links
to the admins of that project only (the pages check again: this only hides links)."""

from __future__ import annotations

from typing import Any

from django import template

from projects.permissions import admin_projects

register = template.Library()


@register.filter
def is_project_admin(user: Any, project: Any) -> bool:
    if project is None or not getattr(user, "is_authenticated", False):
        return False
    # One query per request however often a page asks: cached on the request's user object.
    ids = getattr(user, "_tally_admin_project_ids", None)
    if ids is None:
        ids = set(admin_projects(user).values_list("pk", flat=True))
        user._tally_admin_project_ids = ids
    return project.pk in ids
