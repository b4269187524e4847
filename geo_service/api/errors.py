"""Domain exceptions -> HTTP statuses, in one table."""

from __future__ import annotations

import json
import logging

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geo_service.api.limits import TrackedSend, answer
from geo_service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GeoServiceError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    describe_problems,
)

log = logging.getLogger("geo_service.api")
# Set in a request's scope when it was answered 503 for a lost database connection.
DATABASE_LOST = "geo.database_lost"

STATUS: dict[type[GeoServiceError], int] = {
    PayloadTooLarge: 413,
    BadRequest: 400,
    InvalidInput: 422,
    NotFound: 404,
    Unauthorized: 401,
    Forbidden: 403,
    Conflict: 409,
    TooManyRequests: 429,
    Unavailable: 503,
}


def status_of(exc: GeoServiceError) -> int:
    """The most specific status for a domain error (500 for an unexpected subclass)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_of_answer(status: int, path: str, body: bytes) -> GeoServiceError:
    """The domain error an answer of this API stands for (the table above read backwards), for
    clients of the API in this codebase (the map export, the in-process client)."""
    try:
        message = json.loads(body).get("message") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")
    for cls, code in STATUS.items():
        if code == status:
            return cls(f"{path}: {message}")
    if status < 500:
        return InvalidInput(f"{path} answered {status}: {message}")
    return Unavailable(f"{path} answered {status}: {message}")


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(GeoServiceError)
    async def _domain(request: Request, exc: GeoServiceError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        body = {"error": exc.code, "message": exc.message}
        if exc.details is not None:
            body["details"] = jsonable_encoder(exc.details)  # times, decimals: as JSON has them
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own answers (no route, a method a route does not take) in our shape.
        if exc.status_code == 404:
            body = {"error": NotFound.code, "message": f"no such resource: {request.url.path}"}
        elif exc.status_code == 405:
            allow = _methods_of(request) or (exc.headers or {}).get("Allow", "")
            message = f"{request.method} is not allowed on {request.url.path}; use {allow}"
            body = {"error": "method_not_allowed", "message": message}
            return JSONResponse(body, 405, headers={"Allow": allow})
        elif exc.status_code == 400:  # FastAPI could not parse the body: bad input, as 422
            message = f"the request body cannot be read: {exc.detail}"
            return JSONResponse({"error": InvalidInput.code, "message": message}, 422)
        else:
            body = {"error": "http_error", "message": str(exc.detail)}
        return JSONResponse(body, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The same shape as a domain error, naming each bad parameter and why.
        body = {
            "error": InvalidInput.code,
            "message": describe_problems(exc.errors()),
            "detail": jsonable_encoder(exc.errors()),
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg_pool.PoolTimeout)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # A stopped database is an outage, not a bug: answer fast with 503 so clients retry.
        log.error("%s %s: database unavailable: %s", request.method, request.url.path, exc)
        request.scope[DATABASE_LOST] = True  # for RetryReads
        pool = getattr(request.app.state, "read_pool", None)
        if pool is not None and hasattr(pool, "mark_down"):
            pool.mark_down()
        return JSONResponse(
            {"error": "unavailable", "message": "the database is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(psycopg.errors.DataError)
    async def _data_error(request: Request, exc: psycopg.errors.DataError) -> JSONResponse:
        # A value the routes' own checks let through and PostgreSQL refused (a number out of
        # its type's range): the caller's input, never the service's fault.
        reason = exc.diag.message_primary or str(exc)
        log.warning("%s %s: value refused by the database: %s", *_where(request), reason)
        message = f"a value given is out of range or malformed: {reason}"
        return JSONResponse({"error": InvalidInput.code, "message": message}, 422)

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _database_down(request, exc)
        if isinstance(exc.orig, psycopg.errors.DataError):
            return await _data_error(request, exc.orig)
        log.exception("%s %s: database error", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "message": "internal database error"}, status_code=500
        )


def _methods_of(request: Request) -> str:
    """The methods of the resource at this path, as the OpenAPI document lists them.

    Starlette's 405 names only the first route whose path matches, and GET and POST of one
    path are two routes here; and a path one template matches exactly (/incidents/overdue)
    is not also the resource of a broader one (/incidents/{ref})."""
    paths = request.app.openapi()["paths"]
    found = [t for t in paths if compile_path(t)[0].match(request.scope["path"])]
    if not found:
        return ""
    resource = min(found, key=lambda template: (template.count("{"), template))
    return ", ".join(sorted(method.upper() for method in paths[resource]))


def _where(request: Request) -> tuple[str, str]:
    return request.method, request.url.path


class InternalErrors:
    """Pure ASGI middleware: an exception no handler took becomes the documented JSON 500,
    logged with its traceback, and goes no further.

    Left to propagate, Starlette answers plain text and re-raises, and uvicorn then closes the
    connection: a keep-alive client's next request on it fails with "connection reset".
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; answer 500 in our shape if it raises before answering."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("%s %s: internal error", scope["method"], scope["path"])
            if tracked.started:
                return  # half an answer is out: nothing better can follow
            body = {"error": "internal", "message": "internal error; it has been logged"}
            await answer(send, 500, json.dumps(body).encode(), b"application/json")


class RetryReads:
    """Pure ASGI middleware, used when reads go to hot standbys (GEO_DATABASE_READ_URLS): a GET
    or HEAD answered 503 because its database connection was lost is run once more.

    A standby that stops ends the queries running on it; the requests behind them are the only
    ones its loss would fail (the next ones find its connections closed and read elsewhere,
    db/replicas.py). Their second run reads on the next standby or the primary. A 503 of the
    second run, or one with another cause, goes out as it was; other methods are not retried.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request; once more if it lost its database connection."""
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        first = dict(scope)  # routing writes into the scope: each run starts from the original
        received: list[Message] = []
        held: list[Message] = []

        async def recording() -> Message:
            message = await receive()
            received.append(message)
            return message

        async def holding_503(message: Message) -> None:
            if held or (message["type"] == "http.response.start" and message["status"] == 503):
                held.append(message)  # until we know whether it is sent or retried
                return
            await send(message)

        await self.app(first, recording, holding_503)
        if not (held and first.get(DATABASE_LOST)):
            for message in held:
                await send(message)
            return
        log.warning("%s %s: run again after losing its connection", scope["method"], scope["path"])
        replay = iter(received)

        async def replaying() -> Message:
            return next(replay, None) or await receive()

        await self.app(dict(scope), replaying, send)
