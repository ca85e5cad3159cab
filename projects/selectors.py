"""Reads for projects and keys. Authenticating a bearer key is in services: it records the
key's use (last_used_at)."""

from __future__ import annotations

from datetime import date, timedelta

from django.db.models import F

from projects.models import Environment, IngestKey, Membership, Project


def ingest_key_is_live(*, key_id: int) -> bool:
    return IngestKey.objects.filter(pk=key_id, revoked_at__isnull=True).exists()


def project_keys(*, project: Project) -> list[IngestKey]:
    """Every key of the project, live first, newest first."""
    return list(
        IngestKey.objects.filter(project=project)
        .select_related("environment")
        .order_by(F("revoked_at").asc(nulls_first=True), "-created_at")
    )


def project_members(*, project: Project) -> list[Membership]:
    return list(Membership.objects.filter(project=project).select_related("user").order_by("user__username"))


def project_by_slug(*, slug: str) -> Project | None:
    return Project.objects.filter(slug=slug).first()


def projects_among(*, project_ids: list[int], slug: str | None = None) -> list[Project]:
    """The projects of `project_ids` (what the caller may reach), only the one `slug` names if
    given; at most two, enough for a caller that needs exactly one to tell none from several."""
    projects = Project.objects.filter(pk__in=project_ids)
    if slug:
        projects = projects.filter(slug=slug)
    return list(projects[:2])


def projects_by_id(*, project_id: int | None = None) -> list[Project]:
    """Every project, or the one `project_id` names (none if it is gone)."""
    return list(Project.objects.all() if project_id is None else Project.objects.filter(pk=project_id))


def project_raw_retention_days(*, project_id: int) -> int | None:
    return Project.objects.filter(pk=project_id).values_list("raw_retention_days", flat=True).first()


def raw_retention_cutoffs(*, today: date) -> dict[int, date]:
    """Per project, the first day its raw events are still kept."""
    return {p.pk: today - timedelta(days=p.raw_retention_days) for p in Project.objects.all()}


def environment_ids(*, project_id: int) -> dict[str, int]:
    """The project's environments, name -> id."""
    return dict(Environment.objects.filter(project_id=project_id).values_list("name", "pk"))


def environment_name(*, environment_id: int) -> str | None:
    return Environment.objects.filter(pk=environment_id).values_list("name", flat=True).first()


def project_slug_of(*, project_id: int) -> str:
    return Project.objects.values_list("slug", flat=True).get(pk=project_id)


def project_admin_emails(*, project_id: int) -> list[str]:
    """Where project notices go: the addresses of the project's active admins (Membership role admin)."""
    found = (
        Membership.objects.filter(project_id=project_id, role=Membership.Role.ADMIN, user__is_active=True)
        .exclude(user__email="")
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )
    return list(dict.fromkeys(found))
