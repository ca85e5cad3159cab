"""The OpenAPI 3 description of every /api/v1/ endpoint (CONTRACT §3-5), served at
/api/v1/openapi.json. Written by hand next to the contract, except the ingest `Event`, which is
generated from its one declaration (ingest.schemas.Event). Tests run schemathesis against it,
so a response that drifts from it fails the suite. It lives in config/ because it describes
every app's API (apps import downwards only).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from alerts.models import Condition, Metric, Window
from ingest.schemas import openapi_components as event_components

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_NUM = {"type": "number"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = {"type": "object", "required": ["error"], "properties": {"error": _STR}}
FIELD_ERRORS: dict[str, Any] = {
    "type": "object", "required": ["errors"],
    "properties": {"errors": {"type": "array", "items": {
        "type": "object", "required": ["field", "message"], "properties": {"field": _STR, "message": _STR}}}},
}

INGEST_RESULT = {
    "type": "object", "required": ["accepted", "duplicates", "rejected"],
    "properties": {
        "accepted": _INT, "duplicates": _INT,
        "rejected": {"type": "array", "items": {
            "type": "object", "required": ["index", "errors"],
            "properties": {"index": _INT, "errors": FIELD_ERRORS["properties"]["errors"]}}},
    },
}

METRICS_ROW_FIELDS = {
    "requests": _INT, "errors": _INT, "error_rate": _NUM, "input_tokens": _INT, "output_tokens": _INT,
    "cache_read_input_tokens": _INT, "cache_creation_input_tokens": _INT, "cache_write_5m_tokens": _INT,
    "cache_write_1h_tokens": _INT, "cache_hits": _INT, "cache_hit_rate": _NUM, "batch_requests": _INT,
    "cost_usd": _NUM, "cache_savings_usd": _NUM, "unpriced_requests": _INT, "latency_avg_ms": _NUM,
    "latency_p50_ms": _NUM, "latency_p95_ms": _NUM, "latency_p99_ms": _NUM,
}
METRICS = {
    "type": "object", "required": ["granularity", "series", "totals", "as_of"],
    "properties": {
        "granularity": {"type": "string", "enum": ["hour", "day"]},
        "series": {"type": "array", "items": {
            "type": "object", "required": ["bucket", "group", *METRICS_ROW_FIELDS],
            "properties": {"bucket": {"type": "string", "format": "date-time"},
                           "group": {"type": "object", "additionalProperties": _STR}, **METRICS_ROW_FIELDS}}},
        "totals": {"type": "object", "required": list(METRICS_ROW_FIELDS), "properties": METRICS_ROW_FIELDS},
        "as_of": {"type": "string", "format": "date-time"},
    },
}

RULE_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "project": {"type": "string", "description": "project slug (sessions with several projects)"},
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "metric": {"type": "string", "enum": list(Metric.values)},
        "window": {"type": "string", "enum": list(Window.values)},
        "condition": {"type": "string", "enum": list(Condition.values)},
        "threshold": {"type": ["number", "null"], "minimum": 0},
        "sensitivity": {"type": ["number", "null"], "minimum": 0.5, "maximum": 20},
        "environment": _NSTR, "service": _NSTR, "model": _NSTR,
        "recipients": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1},
        "cooldown_minutes": {"type": "integer", "minimum": 0, "maximum": 10080},
        "min_requests": {"type": "integer", "minimum": 0},
        "enabled": {"type": "boolean"},
    },
}
RULE = {
    "type": "object",
    "required": ["id", "project", "name", "metric", "window", "condition", "threshold", "sensitivity",
                 "environment", "service", "model", "recipients", "cooldown_minutes", "enabled"],
    "properties": {**RULE_INPUT["properties"], "id": _INT, "threshold": {"type": ["number", "null"]},
                   "sensitivity": {"type": ["number", "null"]},
                   "recipients": {"type": "array", "items": _STR},
                   "created_at": {"type": "string", "format": "date-time"},
                   "updated_at": {"type": "string", "format": "date-time"}},
}
BUDGETS = {
    "type": "object", "required": ["budgets"],
    "properties": {"budgets": {"type": "array", "items": {
        "type": "object",
        "required": ["id", "name", "period", "limit_usd", "spent_usd", "projected_usd", "exceeded"],
        "properties": {"id": _INT, "name": _STR, "period": {"type": "string", "enum": ["day", "month"]},
                       "scope": {"type": "object"}, "period_start": _STR, "period_end": _STR,
                       "limit_usd": _NUM, "spent_usd": _NUM, "projected_usd": _NUM, "used": _NUM,
                       "exceeded": {"type": "boolean"}}}}},
}

_401 = _json(ERROR, "missing, unknown or revoked credentials")
_503 = {**_json(ERROR, "database unavailable; retry after Retry-After seconds"),
        "headers": {"Retry-After": {"schema": _INT}}}


def _params(names: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "description": d, "schema": s} for n, d, s in names]


def openapi_spec() -> dict[str, Any]:
    filters = [(n, f"only this {n} (repeatable)", {"type": "array", "items": _STR}) for n in
               ("environment", "service", "model", "feature")]
    filter_params = [{**p, "style": "form", "explode": True} for p in _params(filters)]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tally API", "version": "1",
                 "description": "Telemetry ingest, metrics, alert rules and budgets of Tally."},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "ingest, read or admin key"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"}},
            "schemas": {**event_components(), "IngestResult": INGEST_RESULT, "Error": ERROR,
                        "FieldErrors": FIELD_ERRORS, "Metrics": METRICS, "AlertRuleInput": RULE_INPUT,
                        "AlertRule": RULE, "Budgets": BUDGETS},
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/api/v1/events": {"post": {
                "summary": "Ingest one event or a batch of 1..1000",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    _ref("Event"),
                    {"type": "object", "additionalProperties": False, "required": ["events"],
                     "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 1000,
                                               "items": _ref("Event")}}}]}}}},
                "responses": {
                    "202": _json(_ref("IngestResult"), "accepted events are committed"),
                    "400": _json({"oneOf": [_ref("IngestResult"), _ref("Error")]},
                                 "no valid event, or a malformed body"),
                    "401": _401,
                    "413": _json(_ref("Error"), "body over 5 MiB, compressed or not"),
                    "415": _json(_ref("Error"), "not JSON"),
                    "429": {**_json(_ref("Error"), "rate limited"), "headers": {"Retry-After": {"schema": _INT}}},
                    "503": _503,
                },
            }},
            "/api/v1/metrics": {"get": {
                "summary": "Series and totals from the aggregates",
                "parameters": [
                    *_params([("from", "YYYY-MM-DD (inclusive) or RFC 3339", _STR),
                              ("to", "YYYY-MM-DD (inclusive) or RFC 3339", _STR),
                              ("granularity", "bucket size", {"type": "string", "enum": ["hour", "day"]}),
                              ("group_by", "comma list of model, service, environment, feature", _STR),
                              ("project", "project slug (sessions)", _STR)]),
                    *filter_params,
                ],
                "responses": {"200": _json(_ref("Metrics"), "metrics"),
                              "400": _json({"type": "object", "required": ["error", "field"],
                                            "properties": {"error": _STR, "field": _STR}}, "bad parameter"),
                              "401": _401, "503": _503},
            }},
            "/api/v1/alert-rules": {
                "get": {"summary": "List alert rules (admin)",
                        "responses": {"200": _json({"type": "object", "required": ["rules"], "properties": {
                            "rules": {"type": "array", "items": _ref("AlertRule")}}}, "rules"),
                            "401": _401, "503": _503}},
                "post": {"summary": "Create an alert rule (admin)",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": _ref("AlertRuleInput")}}},
                         "responses": {"201": _json(_ref("AlertRule"), "created"),
                                       "400": _json({"oneOf": [_ref("FieldErrors"), _ref("Error")]},
                                                    "every invalid field named; nothing saved"),
                                       "401": _401, "415": _json(_ref("Error"), "not JSON"), "503": _503}},
            },
            "/api/v1/alert-rules/{rule_id}": {
                "parameters": [{"name": "rule_id", "in": "path", "required": True, "schema": _INT}],
                "get": {"summary": "One rule", "responses": {
                    "200": _json(_ref("AlertRule"), "the rule"), "401": _401,
                    "404": {"description": "no such rule in your projects"}, "503": _503}},
                "patch": {"summary": "Change some fields", "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("AlertRuleInput")}}}, "responses": {
                    "200": _json(_ref("AlertRule"), "updated"),
                    "400": _json({"oneOf": [_ref("FieldErrors"), _ref("Error")]}, "invalid; nothing saved"),
                    "401": _401, "404": {"description": "no such rule in your projects"},
                    "415": _json(_ref("Error"), "not JSON"), "503": _503}},
                "delete": {"summary": "Delete", "responses": {
                    "204": {"description": "deleted"}, "401": _401,
                    "404": {"description": "no such rule in your projects"}, "503": _503}},
            },
            "/api/v1/budgets/status": {"get": {
                "summary": "Budgets in scope: limit, spent, projection, exceeded",
                "parameters": _params([("service", "the calling service", _STR),
                                       ("user_id", "the end user", _STR), ("project", "project slug", _STR)]),
                "responses": {"200": _json(_ref("Budgets"), "budget status"), "401": _401, "503": _503},
            }},
            "/api/v1/users/forget": {"post": {
                "summary": "Delete an end user's events and per-user aggregates (admin)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["user_id"],
                    "properties": {"user_id": {"type": "string", "minLength": 1}, "project": _STR}}}}},
                "responses": {"200": _json({"type": "object", "properties": {
                    "events_deleted": _INT, "hours_rerolled": _INT, "user_rows_deleted": _INT}}, "done"),
                    "400": _json({"oneOf": [_ref("FieldErrors"), _ref("Error")]}, "invalid"),
                    "401": _401, "503": _503},
            }},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                             "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        },
    }


@require_GET
def openapi_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_spec())
