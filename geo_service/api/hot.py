"""Hot routes: the few GET routes called at rates where FastAPI's per-request machinery costs
more than their query, answered by a pure ASGI middleware in front of FastAPI's router.

Measured on GET /api/v1/locate (issue 21): FastAPI 0.165 matches a request against every
included router in turn and resolves the route's dependencies, together about half of the
Python a locate costs; the locate query itself is a tenth. A hot route stays an ordinary
FastAPI route too (the OpenAPI document, other methods and a path with a trailing slash are
FastAPI's); `HotRoutes` only answers a GET of its exact path, with what FastAPI would have used: the
permission check of `auth.authorize`, the same endpoint function (which reads the request
itself and returns a Response), the app's own exception handlers, and the route in the scope,
so that metrics and the request log name it as before. It sits innermost among the app's
middlewares: request ids, the request log, metrics, the body and NUL checks and the JSON 500
all see a hot request as any other.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from geo_service.api.auth import authorize

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class HotRoute:
    """A FastAPI route answered directly, and the permission its router requires."""

    route: APIRoute
    permission: str

    def __post_init__(self) -> None:
        if "GET" not in (self.route.methods or ()):
            raise ValueError(f"hot route {self.route.path} takes no GET")
        parameters = list(inspect.signature(self.route.endpoint).parameters)
        if parameters != ["request"]:  # FastAPI would resolve anything else: not here
            raise ValueError(f"hot route {self.route.path} must take only the request")


class HotRoutes:
    """Pure ASGI middleware answering GET requests of the hot routes' exact paths."""

    def __init__(self, app: ASGIApp, routes: Iterable[HotRoute]) -> None:
        self.app = app
        self.routes = {hot.route.path: hot for hot in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a hot route, or pass the request on to FastAPI."""
        hot = None
        if scope["type"] == "http" and scope["method"] == "GET":
            hot = self.routes.get(_route_path(scope))
        if hot is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = hot.route  # as FastAPI's router sets it: the request log's label
        scope["endpoint"] = hot.route.endpoint
        request = Request(scope, receive)
        try:
            await authorize(request, hot.permission)
            endpoint: Endpoint = hot.route.endpoint
            response = await endpoint(request)
        except Exception as exc:
            handler = _handler_of(scope["app"].exception_handlers, exc)
            if handler is None:
                raise  # InternalErrors answers the JSON 500
            answered = handler(request, exc)
            response = await answered if inspect.isawaitable(answered) else answered
        await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path as the router matches it (without the root path a proxy mounts us under)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def _handler_of(handlers: dict[Any, Any], exc: Exception) -> Any:
    """The app's handler of this exception, found as Starlette's ExceptionMiddleware finds
    it (the most specific class registered; a handler of Exception is the 500's, not its),
    or None."""
    for cls in type(exc).__mro__:
        if cls in handlers and cls is not Exception:
            return handlers[cls]
    return None
