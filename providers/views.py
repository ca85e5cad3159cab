"""Provider connection and reconciliation: the JSON API (CONTRACT §7) and the pages
(Settings → Provider for admins, Reconciliation for every member).

The Admin API key goes in (PUT, the form) and never comes out: every answer and page shows
`admin_key_last4` only, and the form's password input is never re-filled.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from kombu.exceptions import OperationalError as BrokerError

from core.http import database_unavailable_as_503, json_error
from projects.permissions import administered_project, is_project_admin, visible_projects
from projects.selectors import projects_among
from projects.services import admin_project_ids, api_project_ids
from providers import selectors, services
from providers.forms import ProviderConnectionForm, range_parse
from providers.tasks import provider_usage_sync_task

if TYPE_CHECKING:
    from projects.models import Project

logger = logging.getLogger(__name__)

_BODY_FIELDS = {
    "provider": (str,),
    "admin_key": (str,),
    "api_key_ids": (list,),
    "workspace_ids": (list,),
    "project": (str,),
}


def _one_project(project_ids: list[int], slug: str | None) -> Project | JsonResponse:
    """The project an API call is about: the only one the credentials reach, or the one `slug` names."""
    found = projects_among(project_ids=project_ids, slug=slug)
    if len(found) == 1:
        return found[0]
    if not found:
        return json_error(404, "no such project among yours")
    return JsonResponse({"error": "name one project with ?project=<slug>", "field": "project"}, status=400)


def _json_body(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    if request.content_type != "application/json":
        return json_error(415, "Content-Type must be application/json")
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as exc:
        return json_error(400, f"malformed JSON: {exc}")
    if not isinstance(body, dict):
        return json_error(400, "body must be a JSON object")
    errors = [{"field": k, "message": "is not a known field"} for k in body if k not in _BODY_FIELDS]
    errors += [
        {"field": k, "message": f"must be a {_BODY_FIELDS[k][0].__name__}"}
        for k, v in body.items()
        if k in _BODY_FIELDS and v is not None and not isinstance(v, _BODY_FIELDS[k])
    ]
    return JsonResponse({"errors": errors}, status=400) if errors else body


def _form_errors(form: ProviderConnectionForm) -> list[dict[str, str]]:
    return [{"field": name, "message": str(message)} for name, errs in form.errors.items() for message in errs]


@csrf_exempt
@require_http_methods(["GET", "PUT", "DELETE"])
@database_unavailable_as_503
def provider_connection(request: HttpRequest) -> HttpResponse:
    """CONTRACT §7: read, store or remove the project's Anthropic connection (admin session or key)."""
    project_ids = admin_project_ids(request)
    if project_ids is None:
        return json_error(401, "needs an admin login or Authorization: Bearer <admin key>")
    body = _json_body(request) if request.method == "PUT" else {}
    if isinstance(body, JsonResponse):
        return body
    project = _one_project(project_ids, body.get("project") or request.GET.get("project"))
    if isinstance(project, JsonResponse):
        return project
    connection = selectors.connection_of(project_id=project.pk)
    if request.method == "GET":
        if connection is None:
            return json_error(404, f"project {project.slug} has no provider connection")
        return JsonResponse(selectors.connection_as_dict(connection))
    if request.method == "DELETE":
        if not services.provider_connection_delete(project=project):
            return json_error(404, f"project {project.slug} has no provider connection")
        return HttpResponse(status=204)
    form = ProviderConnectionForm(
        data={k: v for k, v in body.items() if k != "project"}, connected=connection is not None
    )
    if not form.is_valid():
        return JsonResponse({"errors": _form_errors(form)}, status=400)
    connection = services.provider_connection_set(project=project, **_connection_fields(form))
    return JsonResponse(selectors.connection_as_dict(connection))


def _connection_fields(form: ProviderConnectionForm) -> dict[str, Any]:
    data = form.cleaned_data
    return {"admin_key": data["admin_key"], "api_key_ids": data["api_key_ids"], "workspace_ids": data["workspace_ids"]}


@require_GET
@database_unavailable_as_503
def reconciliation(request: HttpRequest) -> JsonResponse:
    """CONTRACT §7: per day and model, the provider's figures beside Tally's (session or read key)."""
    project_ids = api_project_ids(request, project_slug=request.GET.get("project"))
    if project_ids is None:
        return json_error(401, "log in, or send Authorization: Bearer <read key>")
    project = _one_project(project_ids, request.GET.get("project"))
    if isinstance(project, JsonResponse):
        return project
    try:
        start, end = range_parse(request.GET, today=timezone.now().date())
    except ValidationError as exc:
        field, messages_ = next(iter(exc.message_dict.items()))
        return JsonResponse({"error": messages_[0], "field": field}, status=400)
    result = selectors.reconciliation(project_id=project.pk, start=start, end=end)
    if result.connection is None:
        return json_error(404, f"project {project.slug} has no provider connection: PUT /api/v1/provider-connection")
    return JsonResponse(result.as_dict())


# --- pages --------------------------------------------------------------------------------------


def _page(request: HttpRequest, name: str, project: Project, status: int = 200, **context: Any) -> HttpResponse:
    return render(
        request,
        f"providers/{name}.html",
        {"current_project": project, "active": name, "nav_querystring": f"project={project.slug}", **context},
        status=status,
    )


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def provider_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Settings → Provider: the connection's state (never its key) and the form that sets it."""
    project = administered_project(request.user, slug)
    connection = selectors.connection_of(project_id=project.pk)
    initial = {"api_key_ids": connection.api_key_ids, "workspace_ids": connection.workspace_ids} if connection else {}
    form = ProviderConnectionForm(
        request.POST if request.method == "POST" else None, initial=initial, connected=connection is not None
    )
    if request.method == "POST" and form.is_valid():
        services.provider_connection_set(project=project, **_connection_fields(form))
        messages.success(request, "Provider connection saved. The key is stored encrypted and won't be shown again.")
        return redirect("providers_ui:provider", slug=project.slug)
    return _page(request, "provider", project, status=400 if form.is_bound else 200, form=form, connection=connection)


@login_required
@require_POST
def provider_delete(request: HttpRequest, slug: str) -> HttpResponse:
    project = administered_project(request.user, slug)
    if services.provider_connection_delete(project=project):
        messages.success(request, "Provider connection removed, with the figures read through it.")
    return redirect("providers_ui:provider", slug=project.slug)


@login_required
@require_POST
def provider_sync(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue a sync now (the worker runs it; its outcome shows on this page as last sync / last error)."""
    project = administered_project(request.user, slug)
    try:
        provider_usage_sync_task.delay(project_slug=project.slug)
        messages.success(request, "Sync queued: reload in a moment to see its result.")
    except BrokerError:
        logger.warning("could not queue a provider sync for %s: broker unavailable", project.slug)
        messages.error(request, "Could not queue the sync: the task broker is unavailable. The hourly sync will run.")
    return redirect("providers_ui:provider", slug=project.slug)


@login_required
@require_GET
def reconciliation_page(request: HttpRequest) -> HttpResponse:
    """Anthropic's figures beside Tally's, per day and model, with what the differences mean.
    `?project=` like the dashboards (default: the first project the user sees)."""
    slug = request.GET.get("project")
    projects = visible_projects(request.user).order_by("slug")
    project = projects.filter(slug=slug).first() if slug else projects.first()
    if project is None:
        raise Http404("No such project among yours.")
    today = timezone.now().date()
    try:
        start, end = range_parse(request.GET, today=today)
        range_error = None
    except ValidationError as exc:
        start, end = range_parse({}, today=today)
        range_error = "; ".join(f"{k}: {v[0]}" for k, v in exc.message_dict.items())
    result = selectors.reconciliation(project_id=project.pk, start=start, end=end)
    return _page(
        request,
        "reconciliation",
        project,
        result=result,
        range_error=range_error,
        is_admin=is_project_admin(request.user, project),
        prices_url=reverse("pricing:prices", args=[project.slug]),
    )
