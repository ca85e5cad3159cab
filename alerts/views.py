"""Alerts: the JSON API (CONTRACT §5) and the HTML pages under /alerts/.

Every page asks projects.permissions who may see (members) and manage (project admins,
superusers) a project. A viewer gets the pages read-only and 403 on every URL that writes,
GET or POST, before any form is looked at.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from alerts import selectors, services
from alerts.channels import ChannelResult, channels_masked
from alerts.forms import AlertRuleForm, BudgetForm, DigestForm, budget_as_dict, form_errors, json_types, rule_as_dict
from alerts.models import AlertRule, Budget, Notification
from alerts.selectors import UiScope, budgets_status, ui_scope
from core.http import database_unavailable_as_503, field_error, json_error
from projects.permissions import visible_projects
from projects.selectors import environment_name, projects_among
from projects.services import INGEST_SCOPES, admin_project_ids, api_project_ids, key_from_bearer

if TYPE_CHECKING:
    from projects.models import Project

_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "metric": (str,),
    "window": (str,),
    "condition": (str,),
    "threshold": (int, float),
    "sensitivity": (int, float),
    "environment": (str,),
    "service": (str,),
    "model": (str,),
    "recipients": (list,),
    "channels": (list,),
    "cooldown_minutes": (int,),
    "min_requests": (int,),
    "enabled": (bool,),
    "project": (str,),
    "per": (str,),
}


def _json_body(
    request: HttpRequest, types: dict[str, tuple[type, ...]] = _TYPES
) -> tuple[dict[str, Any] | None, JsonResponse | None]:
    if request.content_type != "application/json":
        return None, json_error(415, "Content-Type must be application/json")
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as exc:
        return None, json_error(400, f"malformed JSON: {exc}")
    if not isinstance(body, dict):
        return None, json_error(400, "body must be a JSON object")
    errors = [{"field": k, "message": "is not a known field"} for k in body if k not in types]
    errors += [
        {"field": k, "message": f"must be a {' or '.join(t.__name__ for t in types[k])}"}
        for k, v in body.items()
        if k in types
        and v is not None
        and (not isinstance(v, types[k]) or (isinstance(v, bool) and bool not in types[k]))
    ]
    if errors:
        return None, JsonResponse({"errors": errors}, status=400)
    return body, None


@dataclass(frozen=True)
class _Resource:
    """What the rules API and the budgets API differ in; the handling below is the same for both."""

    model: type[AlertRule] | type[Budget]
    form: type[AlertRuleForm] | type[BudgetForm]
    as_dict: Callable[[Any], dict[str, Any]]
    types: dict[str, tuple[type, ...]]
    noun: str
    create_defaults: dict[str, Any]


_RULES = _Resource(AlertRule, AlertRuleForm, rule_as_dict, _TYPES, "rule", {})
# The budget API's fields come from BudgetForm itself (plus the project on create). A JSON budget
# is on unless it says otherwise (an HTML checkbox left unticked means off).
_BUDGETS = _Resource(
    Budget,
    BudgetForm,
    budget_as_dict,
    {**json_types(BudgetForm.base_fields), "project": (str,)},
    "budget",
    {"enabled": True},
)


def _save(resource: _Resource, form_data: dict[str, Any], instance: Model) -> JsonResponse:
    creating = instance.pk is None
    form = resource.form(data=form_data, instance=instance)
    if not form.is_valid():
        return JsonResponse({"errors": form_errors(form)}, status=400)
    return JsonResponse(resource.as_dict(form.save()), status=201 if creating else 200)


def _collection(request: HttpRequest, resource: _Resource) -> JsonResponse:
    """GET lists the objects of the projects the caller administers; POST creates one."""
    project_ids = admin_project_ids(request)
    if project_ids is None:
        return json_error(401, "needs an admin login or Authorization: Bearer <admin key>")
    if request.method == "GET":
        found = resource.model.objects.filter(project_id__in=project_ids).select_related("project")
        return JsonResponse({f"{resource.noun}s": [resource.as_dict(o) for o in found]})
    body, error = _json_body(request, resource.types)
    if error:
        return error
    assert body is not None
    projects = projects_among(project_ids=project_ids, slug=body.get("project"))
    if len(projects) != 1:
        return field_error("project", "name one project you administer")
    return _save(resource, {**resource.create_defaults, **body}, resource.model(project=projects[0]))


def _item(request: HttpRequest, resource: _Resource, pk: int) -> HttpResponse:
    """GET reads one object, PATCH merges the body into it (validated whole), DELETE removes it."""
    project_ids = admin_project_ids(request)
    if project_ids is None:
        return json_error(401, "needs an admin login or Authorization: Bearer <admin key>")
    found = get_object_or_404(resource.model.objects.select_related("project"), pk=pk, project_id__in=project_ids)
    if request.method == "GET":
        return JsonResponse(resource.as_dict(found))
    if request.method == "DELETE":
        found.delete()
        return HttpResponse(status=204)
    body, error = _json_body(request, resource.types)
    if error:
        return error
    assert body is not None
    if "project" in body:
        return field_error("project", f"a {resource.noun} cannot move")
    merged = {k: v for k, v in resource.as_dict(found).items() if k in resource.types and k != "project"}
    merged.update(body)
    return _save(resource, merged, found)


@csrf_exempt
@require_http_methods(["GET", "POST"])
@database_unavailable_as_503
def alert_rules(request: HttpRequest) -> JsonResponse:
    """CONTRACT §5: list or create rules (admin session or admin key)."""
    return _collection(request, _RULES)


@csrf_exempt
@require_http_methods(["GET", "PATCH", "DELETE"])
@database_unavailable_as_503
def alert_rule(request: HttpRequest, rule_id: int) -> HttpResponse:
    return _item(request, _RULES, rule_id)


@csrf_exempt
@require_http_methods(["GET", "POST"])
@database_unavailable_as_503
def budgets(request: HttpRequest) -> JsonResponse:
    """CONTRACT §5: list or create budgets (admin session or admin key), validated as rules are."""
    return _collection(request, _BUDGETS)


@csrf_exempt
@require_http_methods(["GET", "PATCH", "DELETE"])
@database_unavailable_as_503
def budget(request: HttpRequest, budget_id: int) -> HttpResponse:
    return _item(request, _BUDGETS, budget_id)


@require_GET
@database_unavailable_as_503
def budget_status(request: HttpRequest) -> JsonResponse:
    """CONTRACT §5: each budget in scope with limit, spent, projection and `exceeded`."""
    project_ids = api_project_ids(request, project_slug=request.GET.get("project"))
    environment = None
    if project_ids is None and request.headers.get("Authorization"):
        key = key_from_bearer(authorization=request.headers["Authorization"], scopes=INGEST_SCOPES)
        project_ids = None if key is None else [key.project_id]
        if key is not None:  # a client asking "may I call?": only its own environment's budgets apply
            environment = environment_name(environment_id=key.environment_id)
    if project_ids is None:
        return json_error(401, "log in, or send Authorization: Bearer <key>")
    statuses = budgets_status(
        project_ids=project_ids,
        now=timezone.now(),
        service=request.GET.get("service"),
        user_id=request.GET.get("user_id"),
        environment=environment,
    )
    return JsonResponse({"budgets": [s.as_dict() for s in statuses]})


# --- HTML pages (/alerts/, namespace alerts_ui) ------------------------------------------


def _scope(request: HttpRequest) -> UiScope:
    return ui_scope(user=request.user, project_slug=request.GET.get("project"))


def _managed_scope(request: HttpRequest) -> UiScope:
    """The project named by ?project= (else the default one), which the user must administer."""
    scope = ui_scope(user=request.user, project_slug=request.GET.get("project"), strict=True)
    if scope.project is None:
        raise Http404("No such project among yours.")
    if not scope.is_admin:
        raise PermissionDenied("Only admins of this project can change its alerts.")
    return scope


def _object_scope(request: HttpRequest, project: Project, *, manage: bool) -> UiScope:
    scope = ui_scope(user=request.user, project_slug=project.slug, strict=True)
    if manage and not scope.is_admin:
        raise PermissionDenied("Only admins of this project can change its alerts.")
    return scope


def _rule(request: HttpRequest, rule_id: int) -> AlertRule:
    return get_object_or_404(
        AlertRule.objects.select_related("project"), pk=rule_id, project__in=visible_projects(request.user)
    )


def _posted(request: HttpRequest) -> Any:
    """The POST data to bind a form to; None on GET (an unbound form shows no errors)."""
    return request.POST if request.method == "POST" else None


def _to(name: str, scope: UiScope) -> HttpResponse:
    return redirect(f"{reverse(name)}?{scope.querystring}")


def _render(request: HttpRequest, template: str, scope: UiScope, tab: str, **context: Any) -> HttpResponse:
    if scope.project is None:
        template = "no_project"
    # `filters` and `current_project` are what the shared nav reads to keep the project selected.
    nav = {"filters": scope, "current_project": scope.project, "active": "alerts"}
    return render(request, f"alerts/{template}.html", {"scope": scope, "tab": tab, **nav, **context})


@login_required
@require_GET
def rules_page(request: HttpRequest) -> HttpResponse:
    """The project's rules with their state; admins get the buttons that change them."""
    scope = _scope(request)
    rows = selectors.rules_list(project_id=scope.project.pk) if scope.project else []
    return _render(request, "rules", scope, "rules", rows=rows, switcher=True)


@login_required
@require_http_methods(["GET", "POST"])
def rule_create(request: HttpRequest) -> HttpResponse:
    scope = _managed_scope(request)
    assert scope.project is not None
    form = AlertRuleForm(data=_posted(request), instance=AlertRule(project=scope.project))
    if request.method == "POST" and form.is_valid():
        rule = form.save()
        messages.success(request, f"Rule “{rule.name}” created.")
        return _to("alerts_ui:rules", scope)
    return _render(request, "rule_form", scope, "rules", form=form, rule=None)


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = _rule(request, rule_id)
    scope = _object_scope(request, rule.project, manage=True)
    form = AlertRuleForm(data=_posted(request), instance=rule)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Rule “{rule.name}” saved.")
        return _to("alerts_ui:rules", scope)
    return _render(request, "rule_form", scope, "rules", form=form, rule=rule)


@login_required
@require_POST
def rule_toggle(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Enable or disable; `enabled` says which, so a double submit does not flip it back."""
    rule = _rule(request, rule_id)
    scope = _object_scope(request, rule.project, manage=True)
    services.rule_enabled_set(rule=rule, enabled=request.POST.get("enabled") == "true")
    return _to("alerts_ui:rules", scope)


@login_required
@require_http_methods(["GET", "POST"])
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    """GET asks for confirmation (no script, so no confirm() dialog); POST deletes."""
    rule = _rule(request, rule_id)
    scope = _object_scope(request, rule.project, manage=True)
    if request.method == "POST":
        rule.delete()
        messages.success(request, f"Rule “{rule.name}” deleted.")
        return _to("alerts_ui:rules", scope)
    return _render(
        request,
        "confirm_delete",
        scope,
        "rules",
        what="rule",
        name=rule.name,
        consequence=f"Its {rule.incidents.count()} incidents and their emails go with it.",
        cancel=reverse("alerts_ui:rules"),
    )


@login_required
@require_GET
def rule_history(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = _rule(request, rule_id)
    scope = _object_scope(request, rule.project, manage=False)
    rows = selectors.rule_history(rule=rule, now=timezone.now())
    return _render(
        request,
        "rule_history",
        scope,
        "rules",
        rule=rule,
        rows=rows,
        limit=selectors.HISTORY_LIMIT,
        threshold=selectors.threshold_display(rule),
        rule_scope=selectors.scope_display(environment=rule.environment, service=rule.service, model=rule.model),
    )


@login_required
@require_http_methods(["GET", "POST"])
def budgets_page(request: HttpRequest) -> HttpResponse:
    """Budgets with spent / projected / exceeded; admins add one with the form below the list."""
    scope = _managed_scope(request) if request.method == "POST" else _scope(request)
    form = None
    if scope.is_admin:
        form = BudgetForm(data=_posted(request), instance=Budget(project=scope.project))
        if request.method == "POST" and form.is_valid():
            budget = form.save()
            messages.success(request, f"Budget “{budget.name}” added.")
            return _to("alerts_ui:budgets", scope)
    rows = selectors.budgets_list(project_id=scope.project.pk, now=timezone.now()) if scope.project else []
    return _render(request, "budgets", scope, "budgets", rows=rows, form=form, switcher=True)


@login_required
@require_http_methods(["GET", "POST"])
def budget_delete(request: HttpRequest, budget_id: int) -> HttpResponse:
    budget = get_object_or_404(
        Budget.objects.select_related("project"), pk=budget_id, project__in=visible_projects(request.user)
    )
    scope = _object_scope(request, budget.project, manage=True)
    if request.method == "POST":
        budget.delete()
        messages.success(request, f"Budget “{budget.name}” deleted.")
        return _to("alerts_ui:budgets", scope)
    return _render(
        request,
        "confirm_delete",
        scope,
        "budgets",
        what="budget",
        name=budget.name,
        consequence="Its alert emails stop.",
        cancel=reverse("alerts_ui:budgets"),
    )


@login_required
@require_http_methods(["GET", "POST"])
def digest_page(request: HttpRequest) -> HttpResponse:
    scope = _managed_scope(request) if request.method == "POST" else _scope(request)
    subscription = selectors.digest_subscription(project_id=scope.project.pk) if scope.project else None
    stored = selectors.project_channels(project_id=scope.project.pk) if scope.project else []
    initial = {"enabled": subscription.enabled, "recipients": subscription.recipients} if subscription else {}
    form = DigestForm(data=_posted(request), initial=initial, stored_channels=stored) if scope.is_admin else None
    if form is not None and request.method == "POST" and form.is_valid():
        assert scope.project is not None
        services.digest_subscription_set(project_id=scope.project.pk, **form.cleaned_data)
        messages.success(request, "Daily digest saved.")
        return _to("alerts_ui:digest", scope)
    return _render(
        request,
        "digest",
        scope,
        "digest",
        subscription=subscription,
        form=form,
        switcher=True,
        channels=channels_masked(stored),
    )


def _test_results(request: HttpRequest, results: list[ChannelResult]) -> None:
    """One flash per channel: which one, and the service's own error when it refused."""
    if not results:
        messages.error(request, "No channels to test: add one and save first.")
    for result in results:
        if result.ok:
            messages.success(request, f"Test notification sent to {result.destination}.")
        else:
            messages.error(request, f"Test notification to {result.destination} failed: {result.error}")


@login_required
@require_POST
def rule_test(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Send a test message to the rule's saved channels now (services.channels_test_send says why directly)."""
    rule = _rule(request, rule_id)
    scope = _object_scope(request, rule.project, manage=True)
    _test_results(
        request,
        services.channels_test_send(
            channels=rule.channels_encrypted, project_slug=rule.project.slug, what=f"rule “{rule.name}”"
        ),
    )
    return redirect(f"{reverse('alerts_ui:rule_edit', args=[rule.pk])}?{scope.querystring}")


@login_required
@require_POST
def digest_test(request: HttpRequest) -> HttpResponse:
    """Send a test message to the project's saved channels now."""
    scope = _managed_scope(request)
    assert scope.project is not None
    _test_results(
        request,
        services.channels_test_send(
            channels=selectors.project_channels(project_id=scope.project.pk),
            project_slug=scope.project.slug,
            what="the project's channels",
        ),
    )
    return _to("alerts_ui:digest", scope)


@login_required
@require_GET
def outbox_page(request: HttpRequest) -> HttpResponse:
    """Every email of the project, failures first to the eye; members see it, nobody edits it."""
    scope = _scope(request)
    box = selectors.outbox(project_id=scope.project.pk) if scope.project else None
    return _render(request, "outbox", scope, "outbox", box=box, limit=selectors.OUTBOX_LIMIT, switcher=True)


@login_required
@require_GET
def notification_page(request: HttpRequest, notification_id: int) -> HttpResponse:
    """One email as it was rendered: the text body, and the HTML body in a sandboxed iframe
    (srcdoc, no allow-scripts) plus its escaped source, so nothing in it runs here."""
    notification = get_object_or_404(
        Notification.objects.select_related("project", "incident"),
        pk=notification_id,
        project__in=visible_projects(request.user),
    )
    scope = _object_scope(request, notification.project, manage=False)
    return _render(
        request, "notification", scope, "outbox", notification=notification, mail_path=selectors.mail_file_path()
    )
