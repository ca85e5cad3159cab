from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from core.http import database_unavailable_as_503, json_error
from projects.selectors import api_project_ids
from rollups.schemas import QueryError, metrics_query_parse
from rollups.selectors import metrics_query


@require_GET
@database_unavailable_as_503
def metrics(request: HttpRequest) -> JsonResponse:
    """CONTRACT §4: series and totals from the aggregates, for a session or a read key."""
    project_ids = api_project_ids(request, project_slug=request.GET.get("project"))
    if project_ids is None:
        return json_error(401, "log in, or send Authorization: Bearer <read key>")
    try:
        query = metrics_query_parse(request.GET, project_ids=project_ids)
    except QueryError as exc:
        return JsonResponse({"error": str(exc), "field": exc.param}, status=400)
    return JsonResponse(metrics_query(query).as_dict())
