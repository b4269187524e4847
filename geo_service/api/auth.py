"""Bearer tokens on the API: who calls (one dependency), and what the permission table lets
them do (`require`, applied per router in app.py and per route where a router mixes groups).

A token comes in `Authorization: Bearer <token>`, or for GET requests in `access_token=`
(RFC 6750 2.3: map tiles are fetched by URL). Without one the caller is anonymous; with
`GEO_AUTH_REQUIRED=false` a caller without a token acts as admin (a trusted network).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from starlette.concurrency import run_in_threadpool

from geo_service.auth.policy import ANONYMOUS, Principal, allowed, sees_incident
from geo_service.auth.service import authenticate
from geo_service.errors import Forbidden, NotFound, Unauthorized

TRUSTED = Principal("trusted-network", "admin")


async def principal(request: Request) -> Principal:
    """The caller of this request (cached on the request)."""
    found: Principal | None = getattr(request.state, "principal", None)
    if found is not None:
        return found
    token = _token(request)
    if token is None:
        found = ANONYMOUS if request.app.state.settings.auth.required else TRUSTED
    else:
        found = await principal_of_token(request, token)
    request.state.principal = found
    return found


async def principal_of_token(request: Request, token: str) -> Principal:
    """The caller a token names (401 for an unknown, expired or revoked one)."""
    state = request.app.state
    if getattr(state, "read_pool", None) is None:  # an app used without its lifespan
        return await run_in_threadpool(authenticate, state.engine, token)
    return await state.tokens.authenticate(state.read_pool, token)


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        return token.strip()
    if request.method in ("GET", "HEAD"):
        return request.query_params.get("access_token") or None
    return None


PrincipalDep = Annotated[Principal, Depends(principal)]


async def authorize(request: Request, permission: str) -> Principal:
    """The caller, when the permission table lets their role use `permission`: Unauthorized
    without a usable token, Forbidden for a known caller whose role may not."""
    who = await principal(request)
    public = permission == "health"
    if who is ANONYMOUS and not public and not request.app.state.settings.auth.anonymous:
        raise Unauthorized("a token is required")
    if not allowed(who, permission):
        if who is ANONYMOUS:
            raise Unauthorized(f"a token is required ({permission})")
        raise Forbidden(f"role {who.role!r} may not use {permission}")
    return who


def require(permission: str) -> Any:
    """A dependency refusing callers whose role the permission table does not allow:
    401 without a usable token, 403 for a known caller."""

    async def check(request: Request) -> Principal:
        return await authorize(request, permission)

    check.__name__ = f"require_{permission.replace('.', '_')}"
    dependency: DependsParam = Depends(check)
    return dependency


def readable_incident(who: Principal, incident: dict[str, Any]) -> dict[str, Any]:
    """The incident when the caller may read it; NotFound (never a hint) otherwise."""
    if not sees_incident(who, incident.get("grid_code")):
        raise NotFound(f"no incident {incident['ref']!r}")
    return incident
