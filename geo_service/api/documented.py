"""The error answers of every operation, written into the OpenAPI document.

Routers declare their successful answers; the errors come from places shared by all routes
(the permission check, the size limits, the NUL guard, parameter validation, the domain
exception table, a database outage), so they are documented here, once, from the same facts:
a client generated from /openapi.json, and schemathesis, then know every status an operation
can answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a stable code, e.g. invalid_input"},
        "message": {"type": "string", "description": "what is wrong, naming the bad value"},
        "details": {"description": "more, where there is more (e.g. an import's report)"},
        "detail": {"type": "array", "description": "the failed checks of a 422", "items": {}},
    },
}
OPEN311_ERROR_SCHEMA = {
    "title": "Open311Errors",
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
    },
}
WHY = {
    400: "a request the API cannot take: a bad layer, tile or paging parameter (Open311: any "
    "bad input); from the HTTP server itself, a request line or headers too long to read",
    401: "no usable token: missing, unknown, expired or revoked",
    403: "the caller's role may not do this (or an Open311 api_key is not valid)",
    404: "nothing by that name or code",
    409: "conflicts with the stored state (an illegal workflow action, a reused key)",
    413: "the body is larger than GEO_MAX_BODY_BYTES",
    414: "the query string is longer than GEO_MAX_QUERY_BYTES",
    422: "a parameter or field is invalid: the message names it and its value",
    503: "the database is unavailable: retry after Retry-After seconds",
}
# Routes that touch neither tokens nor the database.
_PUBLIC = {"/livez"}
_NO_DATABASE = {"/livez"}


def document_errors(app: FastAPI) -> None:
    """Make `app.openapi()` list the error answers of every operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Error"] = ERROR_SCHEMA
        schemas["Open311Errors"] = OPEN311_ERROR_SCHEMA
        for path, methods in schema.get("paths", {}).items():
            for method, operation in methods.items():
                responses = operation.setdefault("responses", {})
                for status in statuses(path, method, operation):
                    responses.setdefault(str(status), _response(path, status))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation can answer."""
    found = [400, 414]  # (400: the HTTP server refuses what it cannot parse, on any path)
    if path not in _PUBLIC:
        found += [401, 403]
    if path not in _NO_DATABASE:
        found += [404, 503]  # (404 also for what is not there yet, e.g. coverage not computed)
    if operation.get("parameters") or operation.get("requestBody") or "{" in path:
        found.append(422)
    if method in ("post", "put", "patch", "delete"):
        found += [409, 413, 422]
    return sorted(set(found))


def _response(path: str, status: int) -> dict[str, Any]:
    if path.startswith("/open311/"):
        return {
            "description": WHY[status],
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Open311Errors"}},
                "text/xml": {"schema": {"type": "string"}},
                **({"text/plain": {"schema": {"type": "string"}}} if status == 400 else {}),
            },
        }
    content: dict[str, Any] = {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
    }
    if status == 400:  # uvicorn's own answer to a request it cannot parse is plain text
        content["text/plain"] = {"schema": {"type": "string"}}
    return {"description": WHY[status], "content": content}
