"""Tally's own telemetry: Prometheus metrics and request IDs in structured logs.

Counters live in the process that counts (ingest in web workers). With several web server
worker processes, set PROMETHEUS_MULTIPROC_DIR (`make run` and the Docker image do) so /metrics
adds them up across workers. Pipeline state (rollup lag, pending hours, email failures, alert
evaluations) is read from PostgreSQL at scrape time, so it is right whichever process
or container did the work.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator

from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("tally_request_id", default="-")

EVENTS = Counter(
    "tally_ingest_events_total", "Events received by ingest, by project and outcome", ["project", "outcome"]
)
INGEST_SECONDS = Histogram(
    "tally_ingest_request_seconds",
    "Time to answer an ingest request",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def ingest_observe(*, project: str, accepted: int, duplicates: int, rejected: int) -> None:
    if accepted:
        EVENTS.labels(project, "accepted").inc(accepted)
    if duplicates:
        EVENTS.labels(project, "duplicate").inc(duplicates)
    if rejected:
        EVENTS.labels(project, "rejected").inc(rejected)


class PipelineCollector:
    """Gauges read from the database at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT (SELECT count(DISTINCT (project_id, hour_start)) FROM ingest_dirtyhour),
                          (SELECT greatest(0, extract(epoch FROM clock_timestamp() - min(created_at))) FROM ingest_dirtyhour),
                          (SELECT count(*) FROM alerts_notification WHERE sent_at IS NULL AND last_error <> ''),
                          (SELECT count(*) FROM alerts_notification WHERE failed_at IS NOT NULL),
                          (SELECT count(*) FROM alerts_notification WHERE sent_at IS NULL),
                          (SELECT count(*) FROM alerts_incident WHERE resolved_at IS NULL),
                          (SELECT coalesce(sum(evaluations), 0) FROM alerts_alertrule),
                          (SELECT greatest(0, extract(epoch FROM clock_timestamp() - last_pass_finished_at)) FROM rollups_rollupstate
                           WHERE id = 1)"""
            )
            pending, lag, retrying, failed, unsent, open_incidents, evaluations, since_pass = cursor.fetchone()
        yield GaugeMetricFamily("tally_rollup_pending_hours", "Project-hours waiting for the rollup", pending)
        yield GaugeMetricFamily(
            "tally_rollup_lag_seconds", "Age of the oldest event not yet rolled up", float(lag or 0)
        )
        yield GaugeMetricFamily(
            "tally_rollup_seconds_since_last_pass",
            "Seconds since a rollup pass finished",
            float(since_pass) if since_pass is not None else float("nan"),
        )
        yield GaugeMetricFamily("tally_email_retrying", "Emails whose last attempt failed, to be retried", retrying)
        yield GaugeMetricFamily("tally_email_failed", "Emails given up on after every retry", failed)
        yield GaugeMetricFamily("tally_email_unsent", "Emails not sent yet", unsent)
        yield GaugeMetricFamily("tally_alert_incidents_open", "Open alert incidents", open_incidents)
        counter = GaugeMetricFamily(
            "tally_alert_evaluations", "Alert rule evaluations so far (all rules)", float(evaluations)
        )
        yield counter


def metrics_text() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    text = generate_latest(registry)
    pipeline = CollectorRegistry()
    pipeline.register(PipelineCollector())
    return text + generate_latest(pipeline), CONTENT_TYPE_LATEST


def request_id_for(incoming: str) -> str:
    """The request's ID: the caller's X-Request-ID if sane (printable, 1-64 characters), else a new one."""
    return incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex


class RequestIdMiddleware:
    """Gives every request an ID (the caller's X-Request-ID if sane), logs it, echoes it back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request.META.get("HTTP_X_REQUEST_ID", ""))
        token = REQUEST_ID.set(request_id)
        # An attribute of our own on Django's request: the log filter reads it back for records
        # logged after the context variable is reset (django.request's error log).
        request.request_id = request_id  # type: ignore[attr-defined]
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            if request.path == "/api/v1/events":
                INGEST_SECONDS.observe(time.perf_counter() - started)
            response["X-Request-ID"] = request_id
            return response
        finally:
            REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        # Django logs a 4xx/5xx answer (django.request) after the middleware has returned and the
        # context variable is reset; that record carries the request, which carries its ID.
        if request_id == "-":
            request_id = getattr(getattr(record, "request", None), "request_id", "-")
        record.request_id = request_id
        return True
