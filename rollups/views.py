from __future__ import annotations

import csv
import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from core.http import database_unavailable_as_503, field_error, json_error
from projects.selectors import projects_among
from projects.services import admin_project_ids, api_project_ids
from rollups.schemas import QueryError, metrics_format_parse, metrics_query_parse
from rollups.selectors import metrics_query
from rollups.services import user_forget_everywhere


@require_GET
@database_unavailable_as_503
def metrics(request: HttpRequest) -> HttpResponse:
    """CONTRACT §4: series and totals from the aggregates, for a session or a read key;
    `format=csv`: the series rows as CSV, a header line first."""
    project_ids = api_project_ids(request, project_slug=request.GET.get("project"))
    if project_ids is None:
        return json_error(401, "log in, or send Authorization: Bearer <read key>")
    try:
        query = metrics_query_parse(request.GET, project_ids=project_ids)
        output = metrics_format_parse(request.GET)
    except QueryError as exc:
        return JsonResponse({"error": str(exc), "field": exc.param}, status=400)
    result = metrics_query(query)
    if output == "json":
        return JsonResponse(result.as_dict())
    response = HttpResponse(
        content_type="text/csv; charset=utf-8", headers={"Content-Disposition": 'attachment; filename="metrics.csv"'}
    )
    csv.writer(response, lineterminator="\n").writerows(result.csv_rows())
    return response


@csrf_exempt
@require_POST
@database_unavailable_as_503
def user_forget(request: HttpRequest) -> JsonResponse:
    """Deletion request for one end user: {"user_id": "...", "project": "slug"} (admin only)."""
    project_ids = admin_project_ids(request)
    if project_ids is None:
        return json_error(401, "needs an admin login or Authorization: Bearer <admin key>")
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return json_error(400, "malformed JSON")
    user_id = body.get("user_id") if isinstance(body, dict) else None
    if not isinstance(user_id, str) or not user_id or "\x00" in user_id:
        return field_error("user_id", "a non-empty string is required")
    projects = projects_among(project_ids=project_ids, slug=body.get("project"))
    if len(projects) != 1:
        return field_error("project", "name one project you administer")
    result = user_forget_everywhere(project_id=projects[0].pk, user_id=user_id)
    return JsonResponse(
        {
            "events_deleted": result.events_deleted,
            "hours_rerolled": result.hours_rerolled,
            "user_rows_deleted": result.user_rows_deleted,
        }
    )
