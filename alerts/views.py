from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from alerts.forms import AlertRuleForm, form_errors, rule_as_dict
from alerts.models import AlertRule
from alerts.selectors import budgets_status
from core.http import database_unavailable_as_503, json_error
from projects.models import IngestKey, Project
from projects.selectors import admin_project_ids, api_project_ids, key_from_bearer

_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "metric": (str,), "window": (str,), "condition": (str,), "threshold": (int, float),
    "sensitivity": (int, float), "environment": (str,), "service": (str,), "model": (str,), "recipients": (list,),
    "cooldown_minutes": (int,), "min_requests": (int,), "enabled": (bool,), "project": (str,),
}


def _json_body(request: HttpRequest) -> tuple[dict[str, Any] | None, JsonResponse | None]:
    if request.content_type != "application/json":
        return None, json_error(415, "Content-Type must be application/json")
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as exc:
        return None, json_error(400, f"malformed JSON: {exc}")
    if not isinstance(body, dict):
        return None, json_error(400, "body must be a JSON object")
    errors = [{"field": k, "message": "is not a known field"} for k in body if k not in _TYPES]
    errors += [{"field": k, "message": f"must be a {' or '.join(t.__name__ for t in _TYPES[k])}"}
               for k, v in body.items() if k in _TYPES and v is not None
               and (not isinstance(v, _TYPES[k]) or (isinstance(v, bool) and bool not in _TYPES[k]))]
    if errors:
        return None, JsonResponse({"errors": errors}, status=400)
    return body, None


def _save(form_data: dict[str, Any], instance: AlertRule) -> JsonResponse:
    creating = instance.pk is None
    form = AlertRuleForm(data=form_data, instance=instance)
    if not form.is_valid():
        return JsonResponse({"errors": form_errors(form)}, status=400)
    rule = form.save()
    return JsonResponse(rule_as_dict(rule), status=201 if creating else 200)


@csrf_exempt
@require_http_methods(["GET", "POST"])
@database_unavailable_as_503
def alert_rules(request: HttpRequest) -> JsonResponse:
    """CONTRACT §5: list or create rules (admin session or admin key)."""
    project_ids = admin_project_ids(request)
    if project_ids is None:
        return json_error(401, "needs an admin login or Authorization: Bearer <admin key>")
    if request.method == "GET":
        rules = AlertRule.objects.filter(project_id__in=project_ids).select_related("project")
        return JsonResponse({"rules": [rule_as_dict(r) for r in rules]})
    body, error = _json_body(request)
    if error:
        return error
    assert body is not None
    projects = Project.objects.filter(pk__in=project_ids)
    if body.get("project"):
        projects = projects.filter(slug=body["project"])
    if projects.count() != 1:
        return JsonResponse({"errors": [{"field": "project", "message": "name one project you administer"}]},
                            status=400)
    return _save(body, AlertRule(project=projects.get()))


@csrf_exempt
@require_http_methods(["GET", "PATCH", "DELETE"])
@database_unavailable_as_503
def alert_rule(request: HttpRequest, rule_id: int) -> HttpResponse:
    project_ids = admin_project_ids(request)
    if project_ids is None:
        return json_error(401, "needs an admin login or Authorization: Bearer <admin key>")
    rule = get_object_or_404(AlertRule.objects.select_related("project"), pk=rule_id, project_id__in=project_ids)
    if request.method == "GET":
        return JsonResponse(rule_as_dict(rule))
    if request.method == "DELETE":
        rule.delete()
        return HttpResponse(status=204)
    body, error = _json_body(request)
    if error:
        return error
    assert body is not None
    if "project" in body:
        return JsonResponse({"errors": [{"field": "project", "message": "a rule cannot move"}]}, status=400)
    merged = {k: v for k, v in rule_as_dict(rule).items() if k in _TYPES and k != "project"}
    merged.update(body)
    return _save(merged, rule)


@require_GET
@database_unavailable_as_503
def budget_status(request: HttpRequest) -> JsonResponse:
    """CONTRACT §5: each budget in scope with limit, spent, projection and `exceeded`."""
    project_ids = api_project_ids(request, project_slug=request.GET.get("project"))
    if project_ids is None and request.headers.get("Authorization"):
        key = key_from_bearer(authorization=request.headers["Authorization"], scopes=(IngestKey.Scope.INGEST,))
        project_ids = None if key is None else [key.project_id]
    if project_ids is None:
        return json_error(401, "log in, or send Authorization: Bearer <key>")
    statuses = budgets_status(project_ids=project_ids, now=timezone.now(), service=request.GET.get("service"),
                              user_id=request.GET.get("user_id"))
    return JsonResponse({"budgets": [s.as_dict() for s in statuses]})
