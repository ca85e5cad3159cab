from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from core.observability import metrics_text
from core.selectors import readiness


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Database and broker reachable, else 503 naming what is down."""
    checks = readiness()
    ok = all(checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": {k: "ok" if v else "down" for k, v in checks.items()}}
    return JsonResponse(body, status=200 if ok else 503)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text: ingest counters and latency, rollup lag, pending hours, alerts, email."""
    body, content_type = metrics_text()
    return HttpResponse(body, content_type=content_type)
