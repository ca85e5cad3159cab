"""The OpenAPI 3 description of every /api/v1/ endpoint (CONTRACT §3-5, §7), served at
/api/v1/openapi.json. Written by hand next to the contract, except the ingest `Event`, which is
generated from its one declaration (ingest.schemas.Event), and the metrics row, generated from
rollups' field list. Tests run schemathesis against it, so a response that drifts from it fails
the suite. It lives in config/ because it describes every app's API (apps import downwards only).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from alerts.forms import BUDGET_FIELDS, RULE_FIELDS
from alerts.models import Condition, Metric, Per, Window
from ingest.schemas import openapi_components as event_components
from rollups.selectors import METRIC_FIELDS, PER_USER_KNOWN, SUM_FIELDS
from rollups.services import HEADROOM_MINS

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_NUM = {"type": "number"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = {"type": "object", "required": ["error"], "properties": {"error": _STR}}
# A bad query parameter: the message and the parameter's name.
PARAMETER_ERROR = {"type": "object", "required": ["error", "field"], "properties": {"error": _STR, "field": _STR}}
FIELD_ERRORS: dict[str, Any] = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": _STR, "message": _STR},
            },
        }
    },
}

INGEST_RESULT = {
    "type": "object",
    "required": ["accepted", "duplicates", "rejected"],
    "properties": {
        "accepted": _INT,
        "duplicates": _INT,
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "errors"],
                "properties": {"index": _INT, "errors": FIELD_ERRORS["properties"]["errors"]},
            },
        },
    },
}

_ONLINE = "online calls only: Message Batches results (batch: true) are not in latency"
_METRIC_NOTES = {
    "batch_requests": "Message Batches results among requests",
    "latency_avg_ms": _ONLINE,
    "latency_p50_ms": _ONLINE,
    "latency_p95_ms": _ONLINE,
    "latency_p99_ms": _ONLINE,
    "ttft_p50_ms": "time to first token of online calls that reported it; null when none did",
    "ttft_p95_ms": "time to first token of online calls that reported it; null when none did",
    "batch_latency_avg_ms": "average turnaround of Message Batches results; null when none",
    "rate_limited_requests": "calls answered HTTP 429",
    **{
        name: "lowest remaining/limit (0..1) of the anthropic-ratelimit-* headers reported; null when none"
        for name in HEADROOM_MINS
    },
}


def _metric_field(name: str) -> dict[str, Any]:
    """Null: ttft_* and batch_latency_avg_ms as noted, and every field but PER_USER_KNOWN in rows
    read per user (a user_id filter or group)."""
    kind = "integer" if name in SUM_FIELDS else "number"
    schema: dict[str, Any] = {"type": kind if name in PER_USER_KNOWN else [kind, "null"]}
    if name in _METRIC_NOTES:
        schema["description"] = _METRIC_NOTES[name]
    return schema


METRICS_ROW_FIELDS: dict[str, Any] = {name: _metric_field(name) for name in METRIC_FIELDS}
METRICS = {
    "type": "object",
    "required": ["granularity", "series", "totals", "as_of"],
    "properties": {
        "granularity": {"type": "string", "enum": ["hour", "day"]},
        "series": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["bucket", "group", *METRICS_ROW_FIELDS],
                "properties": {
                    "bucket": {"type": "string", "format": "date-time"},
                    "group": {"type": "object", "additionalProperties": _STR},
                    **METRICS_ROW_FIELDS,
                },
            },
        },
        "totals": {"type": "object", "required": list(METRICS_ROW_FIELDS), "properties": METRICS_ROW_FIELDS},
        "as_of": {"type": "string", "format": "date-time"},
    },
}

# A rule's or budget's notification URLs (a rule or budget needs a recipient or a channel).
CHANNELS: dict[str, Any] = {
    "type": "array",
    "maxItems": 20,
    "items": {"type": "string"},
    "description": "notification URLs in Apprise syntax (json://, slack://, msteams://, ...); "
    "returned masked, and a masked entry sent back keeps the stored URL",
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
        "environment": _NSTR,
        "service": _NSTR,
        "model": _NSTR,
        "recipients": {
            "type": "array",
            "items": {"type": "string", "format": "email"},
            "description": "a rule needs at least one recipient or channel",
        },
        "channels": CHANNELS,
        "cooldown_minutes": {"type": "integer", "minimum": 0, "maximum": 10080},
        "min_requests": {"type": "integer", "minimum": 0},
        "enabled": {"type": "boolean"},
        "per": {
            "type": ["string", "null"],
            "enum": [*Per.values, None],
            "description": "judge each value of this dimension on its own (an incident per value)",
        },
    },
}


def _answered(input_schema: dict[str, Any], fields: list[str], **narrower: Any) -> dict[str, Any]:
    """A rule or budget as the API answers with it (alerts.forms.rule_as_dict, budget_as_dict):
    every field of its form, its channels and id, all present; `narrower` are the fields whose
    answer is narrower than what the input accepts."""
    return {
        "type": "object",
        "required": ["id", "project", *fields, "channels"],
        "properties": {
            **input_schema["properties"],
            "id": _INT,
            "recipients": {"type": "array", "items": _STR},
            "created_at": {"type": "string", "format": "date-time"},
            **narrower,
        },
    }


RULE = _answered(
    RULE_INPUT,
    RULE_FIELDS,
    threshold={"type": ["number", "null"]},
    sensitivity={"type": ["number", "null"]},
    updated_at={"type": "string", "format": "date-time"},
)
BUDGET_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "project": {"type": "string", "description": "project slug (sessions with several projects)"},
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "period": {"type": "string", "enum": ["day", "month"]},
        "limit_usd": {"type": "number", "exclusiveMinimum": 0, "description": "at most 2 decimals, 14 digits"},
        "environment": _NSTR,
        "service": _NSTR,
        "user_id": _NSTR,
        "recipients": {"type": "array", "items": {"type": "string", "format": "email"}},
        "channels": CHANNELS,
        "enabled": {"type": "boolean", "description": "default true"},
        "warn_on_forecast": {
            "type": "boolean",
            "description": "default false: email once per period when the forecast date falls before the period ends",
        },
    },
}
BUDGET = _answered(BUDGET_INPUT, BUDGET_FIELDS, limit_usd=_NUM)
BUDGETS = {
    "type": "object",
    "required": ["budgets"],
    "properties": {
        "budgets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "id",
                    "name",
                    "period",
                    "limit_usd",
                    "spent_usd",
                    "projected_usd",
                    "exceeded",
                    "daily_pace_usd",
                    "forecast_exhausted_on",
                ],
                "properties": {
                    "id": _INT,
                    "name": _STR,
                    "period": {"type": "string", "enum": ["day", "month"]},
                    "scope": {"type": "object"},
                    "period_start": _STR,
                    "period_end": _STR,
                    "limit_usd": _NUM,
                    "spent_usd": _NUM,
                    "projected_usd": _NUM,
                    "used": _NUM,
                    "exceeded": {"type": "boolean"},
                    "daily_pace_usd": {
                        "type": "number",
                        "description": ("median daily spend of the 7 UTC days before today (a day without calls is 0)"),
                    },
                    "forecast_exhausted_on": {
                        "type": ["string", "null"],
                        "format": "date",
                        "description": (
                            "UTC date the limit is reached if spend goes on at daily_pace_usd from now; today "
                            "when already reached; null when the pace is 0 or the date is after the period"
                        ),
                    },
                },
            },
        }
    },
}

_ID_LIST = {"type": "array", "maxItems": 100, "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"}}
PROVIDER_CONNECTION_INPUT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "project": {"type": "string", "description": "project slug (sessions with several projects)"},
        "provider": {"type": "string", "enum": ["anthropic"]},
        "admin_key": {
            "type": "string",
            "minLength": 8,
            "maxLength": 512,
            "pattern": "^[\\x21-\\x7e]+$",
            "description": "Anthropic Admin API key; required to create, optional to update",
        },
        "api_key_ids": _ID_LIST,
        "workspace_ids": _ID_LIST,
    },
}
_NDATE = {"type": ["string", "null"], "format": "date"}
_NTIME = {"type": ["string", "null"], "format": "date-time"}
PROVIDER_CONNECTION = {
    "type": "object",
    "required": [
        "project",
        "provider",
        "admin_key_last4",
        "api_key_ids",
        "workspace_ids",
        "last_synced_at",
        "last_error",
    ],
    "properties": {
        "project": _STR,
        "provider": _STR,
        "admin_key_last4": _STR,
        "api_key_ids": {"type": "array", "items": _STR},
        "workspace_ids": {"type": "array", "items": _STR},
        "last_synced_at": _NTIME,
        "last_error": _NSTR,
        "last_error_at": _NTIME,
        "covered_from": _NDATE,
        "covered_to": _NDATE,
    },
}
_RECONCILED_SIDE = {
    "type": "object",
    "required": [
        "requests",
        "uncached_input_tokens",
        "cache_read_input_tokens",
        "cache_creation_5m_input_tokens",
        "cache_creation_1h_input_tokens",
        "output_tokens",
        "cost_usd",
    ],
    "properties": {
        "requests": _INT,
        "uncached_input_tokens": _INT,
        "cache_read_input_tokens": _INT,
        "cache_creation_5m_input_tokens": _INT,
        "cache_creation_1h_input_tokens": _INT,
        "output_tokens": _INT,
        "cost_usd": _NUM,
    },
}
_NNUM = {"type": ["number", "null"]}
RECONCILIATION = {
    "type": "object",
    "required": ["synced_at", "rows", "totals"],
    "properties": {
        "synced_at": _NTIME,
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["date", "model", "provider", "tally", "coverage", "unmetered_cost_usd"],
                "properties": {
                    "date": {"type": "string", "format": "date"},
                    "model": _STR,
                    "provider": _RECONCILED_SIDE,
                    "tally": _RECONCILED_SIDE,
                    "coverage": _NNUM,
                    "unmetered_cost_usd": _NUM,
                },
            },
        },
        "totals": {
            "type": "object",
            "required": ["provider_cost_usd", "tally_cost_usd", "coverage", "unmetered_cost_usd"],
            "properties": {
                "provider_cost_usd": _NUM,
                "tally_cost_usd": _NUM,
                "coverage": _NNUM,
                "unmetered_cost_usd": _NUM,
            },
        },
    },
}
_401 = _json(ERROR, "missing, unknown or revoked credentials")
_503 = {
    **_json(ERROR, "database unavailable; retry after Retry-After seconds"),
    "headers": {"Retry-After": {"schema": _INT}},
}


PER_USER_NOTE = (
    "Per-user numbers are kept per UTC day and environment: a user_id filter or group_by=user_id needs "
    "granularity=day and whole days (dates, or times at 00:00Z; without `to`, the range ends with today), "
    "combines only with environment (a model, service or feature filter or group is a 400), counts only calls "
    "that sent a user_id, and gives requests, errors, error_rate, cost_usd and unpriced_requests; every other "
    "field of those rows is null."
)


def _params(names: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "description": d, "schema": s} for n, d, s in names]


NUL_400 = "a query parameter holds a NUL byte (`field` names it)"


def _with_nul_400(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every operation may answer 400 ParameterError for a NUL byte in a query parameter
    (core.http.ApiNulParameterMiddleware, before any view): declared here once for all of them.
    An operation's own 400 is kept and widened to allow it too."""
    for item in paths.values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            own = responses.get("400")
            if own is None:
                responses["400"] = _json(_ref("ParameterError"), NUL_400)
                continue
            schema = own["content"]["application/json"]["schema"]
            if schema != _ref("ParameterError"):
                schema = {"anyOf": [schema, _ref("ParameterError")]}
            responses["400"] = {
                **_json(schema, f"{own['description']}; or {NUL_400}"),
                **{k: v for k, v in own.items() if k not in ("description", "content")},
            }
    return paths


def _admin_crud(path: str, id_name: str, noun: str, schema: str) -> dict[str, dict[str, Any]]:
    """The collection and item paths of an admin-managed object (alert rules, budgets: CONTRACT §5),
    which alerts/views.py serves with one handling for both."""
    plural = path.split("-")[-1]
    one = path.replace("-", " ")[:-1]  # "alert rule", "budget"
    not_found = {"description": f"no such {noun} in your projects"}
    body = {"required": True, "content": {"application/json": {"schema": _ref(f"{schema}Input")}}}
    listed = {"type": "object", "required": [plural], "properties": {plural: {"type": "array", "items": _ref(schema)}}}
    return {
        f"/api/v1/{path}": {
            "get": {
                "summary": f"List {path.replace('-', ' ')} (admin)",
                "responses": {"200": _json(listed, plural), "401": _401, "503": _503},
            },
            "post": {
                "summary": f"Create {'an' if one[0] in 'aeiou' else 'a'} {one} (admin)",
                "requestBody": body,
                "responses": {
                    "201": _json(_ref(schema), "created"),
                    "400": _json(
                        {"oneOf": [_ref("FieldErrors"), _ref("Error")]}, "every invalid field named; nothing saved"
                    ),
                    "401": _401,
                    "415": _json(_ref("Error"), "not JSON"),
                    "503": _503,
                },
            },
        },
        f"/api/v1/{path}/{{{id_name}}}": {
            "parameters": [{"name": id_name, "in": "path", "required": True, "schema": _INT}],
            "get": {
                "summary": f"One {noun}",
                "responses": {"200": _json(_ref(schema), f"the {noun}"), "401": _401, "404": not_found, "503": _503},
            },
            "patch": {
                "summary": "Change some fields",
                "requestBody": body,
                "responses": {
                    "200": _json(_ref(schema), "updated"),
                    "400": _json({"oneOf": [_ref("FieldErrors"), _ref("Error")]}, "invalid; nothing saved"),
                    "401": _401,
                    "404": not_found,
                    "415": _json(_ref("Error"), "not JSON"),
                    "503": _503,
                },
            },
            "delete": {
                "summary": "Delete",
                "responses": {"204": {"description": "deleted"}, "401": _401, "404": not_found, "503": _503},
            },
        },
    }


def openapi_spec() -> dict[str, Any]:
    filters = [
        (n, f"only this {n} (repeatable)", {"type": "array", "items": _STR})
        for n in ("environment", "service", "model", "feature")
    ]
    filters.append(("user_id", f"only this end user (repeatable). {PER_USER_NOTE}", {"type": "array", "items": _STR}))
    filter_params = [{**p, "style": "form", "explode": True} for p in _params(filters)]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tally API",
            "version": "1",
            "description": "Telemetry ingest, metrics, alert rules and budgets of Tally.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "ingest, read or admin key"},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            },
            "schemas": {
                **event_components(),
                "IngestResult": INGEST_RESULT,
                "Error": ERROR,
                "ParameterError": PARAMETER_ERROR,
                "FieldErrors": FIELD_ERRORS,
                "Metrics": METRICS,
                "AlertRuleInput": RULE_INPUT,
                "AlertRule": RULE,
                "BudgetInput": BUDGET_INPUT,
                "Budget": BUDGET,
                "Budgets": BUDGETS,
                "ProviderConnectionInput": PROVIDER_CONNECTION_INPUT,
                "ProviderConnection": PROVIDER_CONNECTION,
                "Reconciliation": RECONCILIATION,
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": _with_nul_400(
            {
                "/api/v1/events": {
                    "post": {
                        "summary": "Ingest one event or a batch of 1..1000",
                        "security": [{"bearer": []}],
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            _ref("Event"),
                                            {
                                                "type": "object",
                                                "additionalProperties": False,
                                                "required": ["events"],
                                                "properties": {
                                                    "events": {
                                                        "type": "array",
                                                        "minItems": 1,
                                                        "maxItems": 1000,
                                                        "items": _ref("Event"),
                                                    }
                                                },
                                            },
                                        ]
                                    }
                                }
                            },
                        },
                        "responses": {
                            "202": _json(_ref("IngestResult"), "accepted events are committed"),
                            "400": _json(
                                {"oneOf": [_ref("IngestResult"), _ref("Error")]}, "no valid event, or a malformed body"
                            ),
                            "401": _401,
                            "413": _json(_ref("Error"), "body over 5 MiB, compressed or not"),
                            "415": _json(_ref("Error"), "not JSON"),
                            "429": {
                                **_json(_ref("Error"), "rate limited"),
                                "headers": {"Retry-After": {"schema": _INT}},
                            },
                            "503": _503,
                        },
                    }
                },
                "/api/v1/metrics": {
                    "get": {
                        "summary": "Series and totals from the aggregates",
                        "description": "Latency and time-to-first-token fields cover online calls only. "
                        + PER_USER_NOTE,
                        "parameters": [
                            *_params(
                                [
                                    ("from", "YYYY-MM-DD (inclusive) or RFC 3339", _STR),
                                    ("to", "YYYY-MM-DD (inclusive) or RFC 3339", _STR),
                                    ("granularity", "bucket size", {"type": "string", "enum": ["hour", "day"]}),
                                    ("group_by", "comma list of model, service, environment, feature, user_id", _STR),
                                    ("project", "project slug (sessions)", _STR),
                                    (
                                        "format",
                                        "json (default) or csv: the series rows, a header line first "
                                        "(bucket, the group_by columns, then every row field)",
                                        {"type": "string", "enum": ["json", "csv"]},
                                    ),
                                ]
                            ),
                            *filter_params,
                        ],
                        "responses": {
                            "200": {
                                "description": "metrics",
                                "content": {
                                    "application/json": {"schema": _ref("Metrics")},
                                    "text/csv": {"schema": {"type": "string"}},
                                },
                            },
                            "400": _json(_ref("ParameterError"), "bad parameter"),
                            "401": _401,
                            "503": _503,
                        },
                    }
                },
                **_admin_crud("alert-rules", "rule_id", "rule", "AlertRule"),
                **_admin_crud("budgets", "budget_id", "budget", "Budget"),
                "/api/v1/budgets/status": {
                    "get": {
                        "summary": "Budgets in scope: limit, spent, projection, exceeded",
                        "parameters": _params(
                            [
                                ("service", "the calling service", _STR),
                                ("user_id", "the end user", _STR),
                                ("project", "project slug", _STR),
                            ]
                        ),
                        "responses": {"200": _json(_ref("Budgets"), "budget status"), "401": _401, "503": _503},
                    }
                },
                "/api/v1/users/forget": {
                    "post": {
                        "summary": "Delete an end user's events and per-user aggregates (admin)",
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["user_id"],
                                        "properties": {"user_id": {"type": "string", "minLength": 1}, "project": _STR},
                                    }
                                }
                            },
                        },
                        "responses": {
                            "200": _json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "events_deleted": _INT,
                                        "hours_rerolled": _INT,
                                        "user_rows_deleted": _INT,
                                    },
                                },
                                "done",
                            ),
                            "400": _json({"oneOf": [_ref("FieldErrors"), _ref("Error")]}, "invalid"),
                            "401": _401,
                            "503": _503,
                        },
                    }
                },
                "/api/v1/provider-connection": {
                    "parameters": _params([("project", "project slug (sessions with several projects)", _STR)]),
                    "get": {
                        "summary": "The project's Anthropic connection, minus its key (admin)",
                        "responses": {
                            "200": _json(_ref("ProviderConnection"), "the connection"),
                            "400": _json(_ref("Error"), "several projects: name one (`field`: project)"),
                            "401": _401,
                            "404": _json(_ref("Error"), "no connection, or no such project among yours"),
                            "503": _503,
                        },
                    },
                    "put": {
                        "summary": "Store (or update) the Admin API key and scope; the key is never shown again",
                        "requestBody": {
                            "required": True,
                            "content": {"application/json": {"schema": _ref("ProviderConnectionInput")}},
                        },
                        "responses": {
                            "200": _json(_ref("ProviderConnection"), "stored"),
                            "400": _json(
                                {"anyOf": [_ref("FieldErrors"), _ref("Error")]},
                                "every invalid field named; nothing saved",
                            ),
                            "401": _401,
                            "404": _json(_ref("Error"), "no such project among yours"),
                            "415": _json(_ref("Error"), "not JSON"),
                            "503": _503,
                        },
                    },
                    "delete": {
                        "summary": "Remove the connection and the figures read through it",
                        "responses": {
                            "204": {"description": "deleted"},
                            "400": _json(_ref("Error"), "several projects: name one"),
                            "401": _401,
                            "404": _json(_ref("Error"), "no connection"),
                            "503": _503,
                        },
                    },
                },
                "/api/v1/reconciliation": {
                    "get": {
                        "summary": "Per day and model, Anthropic's usage and cost beside Tally's",
                        "parameters": _params(
                            [
                                ("from", "YYYY-MM-DD, inclusive (default: 6 days before to)", _STR),
                                ("to", "YYYY-MM-DD, inclusive (default: today, UTC)", _STR),
                                ("project", "project slug (sessions with several projects)", _STR),
                            ]
                        ),
                        "responses": {
                            "200": _json(_ref("Reconciliation"), "reconciliation"),
                            "400": _json(_ref("Error"), "bad parameter (`field` names it)"),
                            "401": _401,
                            "404": _json(_ref("Error"), "no provider connection, or no such project"),
                            "503": _503,
                        },
                    }
                },
                "/api/v1/openapi.json": {
                    "get": {
                        "summary": "This document",
                        "security": [],
                        "responses": {"200": {"description": "OpenAPI 3.1"}},
                    }
                },
            }
        ),
    }


@require_GET
def openapi_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_spec())
