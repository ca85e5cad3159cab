"""A NUL byte in a query parameter of any /api/v1/ operation: a 400 naming the parameter
(core.http.ApiNulParameterMiddleware), which every operation of the OpenAPI document declares
(config/openapi.py). The operations are read from the document, so a new one is covered too."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from django.test import Client

from config.openapi import openapi_spec
from config.wsgi import application

# The middleware answers before any query, but Django's request_started signal looks at the
# connection an earlier test left open (close_old_connections): the database must be allowed.
pytestmark = pytest.mark.django_db

SPEC = openapi_spec()
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


def operations() -> list[tuple[str, str, str]]:
    """(method, path, a query parameter to poison) for every operation: each declared query
    parameter, or an undeclared one where it has none (the middleware minds any)."""
    out = []
    for path, item in SPEC["paths"].items():
        shared = [p["name"] for p in item.get("parameters", []) if p["in"] == "query"]
        for method, operation in item.items():
            if method == "parameters":
                continue
            names = shared + [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            out += [(method, path, name) for name in names or ["project"]]
    return out


OPERATIONS = operations()
GETS = [(path, name) for method, path, name in OPERATIONS if method == "get"]


def api_routes() -> set[str]:
    """Every /api/v1/ route Django serves, written as the document writes paths."""
    from django.urls import URLPattern, URLResolver, get_resolver

    def walk(patterns: list[Any], prefix: str) -> set[str]:
        out: set[str] = set()
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                out |= walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and route.startswith("api/v1/"):
                out.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
        return out

    return walk(get_resolver().url_patterns, "")


def test_the_document_lists_every_api_route():
    # So the parametrized tests below, read from the document, reach every API view.
    assert api_routes() == set(SPEC["paths"])


@pytest.mark.parametrize(("path", "name"), GETS, ids=[f"GET {p} ?{n}" for p, n in GETS])
def test_a_nul_in_any_get_parameter_is_a_400_naming_it(path, name):
    resp = Client().get(re.sub(r"\{\w+\}", "1", path), {name: "a\x00b"}, HTTP_AUTHORIZATION="Bearer tly_unknown")
    assert resp.status_code == 400
    assert resp.json() == {"error": f"{name}: must not contain a NUL character", "field": name}


def test_a_nul_is_named_whichever_parameter_holds_it_and_other_methods_too():
    resp = Client().post(
        "/api/v1/events?format=json&service=ok&user_id=u%00", data=b"{}", content_type="application/json"
    )
    assert resp.json() == {"error": "user_id: must not contain a NUL character", "field": "user_id"}
    # Not an API path: left to its own view.
    assert Client().get("/healthz?x=%00").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "name"), OPERATIONS, ids=[f"{m.upper()} {p} ?{n}" for m, p, n in OPERATIONS]
)
def test_the_schema_documents_that_400_on_every_operation(method, path, name):
    documented: dict[str, Any] = SPEC["paths"][path][method]["responses"]["400"]
    assert "NUL" in documented["description"]
    operation = schema[path][method.upper()]
    ids = {p: 1 for p in re.findall(r"\{(\w+)\}", path)}
    case = operation.Case(query={name: "a\x00b"}, path_parameters=ids or None)
    response = case.call()
    assert response.status_code == 400
    operation.validate_response(response)  # raises unless the body fits the documented 400
