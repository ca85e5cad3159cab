"""The project's price overrides (negotiated discounts, effective dates): an admin page under the
project's settings, beside keys and retention. Same rules as projects' admin pages:
`administered_project` first (404 unseen, 403 viewer), every object looked up inside it.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from pricing.forms import PriceOverrideForm
from pricing.models import PriceOverride
from pricing.selectors import price_overrides_of
from pricing.services import price_override_create, price_override_delete
from projects.permissions import administered_project

REPRICE_HINT = "New events use it within seconds; run `python manage.py reprice` to re-price stored events."


@login_required
@require_http_methods(["GET", "POST"])
def prices(request: HttpRequest, slug: str) -> HttpResponse:
    project = administered_project(request.user, slug)
    form = PriceOverrideForm(request.POST if request.method == "POST" else None, project=project)
    if not form.is_valid():
        return render(
            request,
            "pricing/prices.html",
            {
                "current_project": project,
                "active": "prices",
                "form": form,
                "overrides": price_overrides_of(project=project),
            },
            status=400 if form.is_bound else 200,
        )
    override = price_override_create(project=project, **form.cleaned_data)
    messages.success(request, f"Added the override for {override.model}. {REPRICE_HINT}")
    return redirect("pricing:prices", slug=project.slug)


@login_required
@require_POST
def price_delete(request: HttpRequest, slug: str, override_id: int) -> HttpResponse:
    project = administered_project(request.user, slug)
    override = get_object_or_404(PriceOverride, pk=override_id, project=project)
    price_override_delete(override=override)
    messages.success(request, f"Deleted the override for {override.model}. {REPRICE_HINT}")
    return redirect("pricing:prices", slug=project.slug)
