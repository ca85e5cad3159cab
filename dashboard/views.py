"""Dashboard pages. Each view is an adapter: parse the filter bar, one selector call, render.

Charts are built from the selector's plain series by dashboard/charts.py (pure functions,
no queries) and embedded with `json_script`; static/dashboard/charts.js draws them.

Every page reads only the projects the user may see (projects.permissions.visible_projects):
a project slug in the query string outside that set is never shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboard import charts, explorer, selectors
from dashboard.forms import RANGES, Filters, filters_parse
from projects.permissions import visible_projects


def _filters(request: HttpRequest) -> Filters:
    return filters_parse(request.GET, now=timezone.now())


def _render(
    request: HttpRequest, name: str, page: Any, figures: dict[str, Any] | None = None, **extra: Any
) -> HttpResponse:
    if figures:
        # Every chart: the rules in scope and their incidents, the previous period when asked, drill-down.
        charts.decorate(
            figures,
            granularity=page.granularity,
            overlays=page.overlays,
            drill=page.drill,
            previous=page.previous_series,
            per_user=page.per_user,
        )
    context = {
        "page": page,
        "filters": page.filters,
        "scope": page.scope,
        "current_project": page.scope.project,
        "active": name,
        "ranges": RANGES,
        "figures": figures or {},
        "ingest_url": request.build_absolute_uri(reverse("ingest:events")),
        **extra,
    }
    return render(request, f"dashboard/{name}.html", context)


def _chart_page(
    request: HttpRequest,
    name: str,
    page_of: Callable[..., selectors.Page],
    figures_of: Callable[[selectors.Page], dict[str, Any]],
) -> HttpResponse:
    """A page of charts: its selector over the filter bar and the projects the user may see, then
    its figures unless the page is empty."""
    page = page_of(_filters(request), projects=visible_projects(request.user))
    return _render(request, name, page, None if page.empty else figures_of(page))


def _series_figures(build: Callable[..., dict[str, Any]]) -> Callable[[selectors.Page], dict[str, Any]]:
    """The figures of a page that draws its series alone (`build(series, granularity=...)`)."""
    return lambda page: build(page.series, granularity=page.granularity)


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """The field guide's daily dashboard: six KPIs and their change, charts, breakdowns, top users."""
    return _chart_page(request, "overview", selectors.overview_page, _series_figures(charts.overview_figures))


@login_required
@require_GET
def spend(request: HttpRequest) -> HttpResponse:
    """Spend by model and service over time, month to date with a linear projection, unpriced calls."""
    return _chart_page(request, "spend", selectors.spend_page, _spend_figures)


def _spend_figures(page: selectors.Page) -> dict[str, Any]:
    mtd = page.data["mtd"]
    return {
        **charts.spend_figures(
            page.series.buckets, page.data["by_model"], page.data["by_service"], granularity=page.granularity
        ),
        "mtd": charts.month_projection_figure(
            mtd.days, mtd.cumulative_usd, last_day=mtd.last_day, projected_usd=mtd.projected_usd
        ),
    }


@login_required
@require_GET
def latency(request: HttpRequest) -> HttpResponse:
    """P50/P95/P99 over time and P95 per model."""
    return _chart_page(request, "latency", selectors.latency_page, _series_figures(charts.latency_figures))


@login_required
@require_GET
def errors(request: HttpRequest) -> HttpResponse:
    """Error rate, errors by type and calls by HTTP status over time."""
    return _chart_page(request, "errors", selectors.errors_page, _errors_figures)


def _errors_figures(page: selectors.Page) -> dict[str, Any]:
    return charts.errors_figures(
        page.series,
        page.data["by_type"],
        page.data["by_status"],
        granularity=page.granularity,
        headroom=page.data["headroom"],
        rate_limited=page.data["rate_limited"],
    )


@login_required
@require_GET
def cache(request: HttpRequest) -> HttpResponse:
    """Prompt caching: hit rate, cached share of prompt tokens, money saved, 5m vs 1h writes."""
    return _chart_page(request, "cache", selectors.cache_page, _series_figures(charts.cache_figures))


@login_required
@require_GET
def events(request: HttpRequest) -> HttpResponseBase:
    """The explorer: filter, sort and page through calls (dashboard/explorer.py), or `format=csv` for all of them."""
    filters, params = _filters(request), explorer.explorer_parse(request.GET)
    if params.csv:
        export = explorer.events_csv(filters, params, projects=visible_projects(request.user))
        if export.lines is None:
            return HttpResponse(
                "Cannot export: " + "; ".join(export.errors) + "\n",
                status=400,
                content_type="text/plain; charset=utf-8",
            )
        response = StreamingHttpResponse(export.lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        return response
    page = explorer.events_page(filters, params, projects=visible_projects(request.user))
    return _render(request, "events", page, statuses=explorer.STATUSES, kinds=explorer.KINDS, sorts=explorer.SORTS)


@login_required
@require_GET
def event_detail(request: HttpRequest, event_id: int) -> HttpResponse:
    """One stored event, every field. `t` (its timestamp) lets the lookup read one partition."""
    filters = _filters(request)
    try:
        at = datetime.fromisoformat(request.GET["t"]) if request.GET.get("t") else None
    except ValueError:
        at = None
    detail = selectors.event_detail(
        project_slug=filters.project_slug,
        event_id=event_id,
        at=at,
        now=filters.now,
        projects=visible_projects(request.user),
    )
    if detail is None:
        raise Http404("No such event in this project (it may be past raw retention).")
    return render(
        request,
        "dashboard/event_detail.html",
        {"detail": detail, "filters": filters, "active": "events", "current_project": detail.project},
    )
