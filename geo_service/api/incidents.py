"""Incident routes: report, follow up, list, supervise (督办), count."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from geo_service.api.auth import PrincipalDep, readable_incident, require
from geo_service.api.deps import EngineDep, OffsetQuery, SettingsDep
from geo_service.auth.policy import allowed, grid_scope, may_take
from geo_service.errors import Forbidden
from geo_service.incidents import bodies, config, followup, intake, queries

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
Path_ = Path(max_length=64)

_REPORT_EXAMPLE = {
    "category": "exposed_rubbish",
    "description": "小区门口垃圾堆放",
    "lon": 117.8123,
    "lat": 30.9321,
    "crs": "gcj02",
    "reporter_phone": "13900000000",
}


@router.post("", status_code=201, dependencies=[require("incidents.report")])
async def create(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    response: Response,
    body: Annotated[
        bodies.IncidentIn,
        Body(
            description="category; lon and lat in crs (wgs84, cgcs2000, gcj02, bd09, EPSG:n), "
            "or an address; description, reporter_name, reporter_phone, reporter_email, "
            "media_url",
            examples=[_REPORT_EXAMPLE],
        ),
    ],
    idempotency_key: Annotated[
        str | None,
        Header(description="a retry with the same key and body returns the first incident"),
    ] = None,
) -> dict[str, Any]:
    """Report an incident: 201 with the incident, routed to its grid when located (a caller
    who may not read incidents gets only its ref, status, category, grid and due time).

    A retry with the same Idempotency-Key and body answers 201 with the same incident and the
    header `Idempotent-Replayed: true`; the same key with a different body is 409.
    """
    # The database work in a request thread; the answer is checked and written here, on the
    # event loop (a plain `def` route would cost a second thread hop for that).
    taken = await run_in_threadpool(
        intake.create_incident, engine, settings, body, idempotency_key, recorded_by=who.name
    )
    if not taken.created:
        response.headers["Idempotent-Replayed"] = "true"
    if not allowed(who, "incidents.read"):  # a reporter: their case, nobody else's data
        return intake.reporter_view(taken.incident)
    return taken.incident


def _filters(
    status: Annotated[list[str] | None, Query(description="repeatable")] = None,
    grid: Annotated[str | None, Query(max_length=64)] = None,
    community: Annotated[str | None, Query(max_length=64)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    overdue: bool | None = None,
    since: Annotated[str | None, Query(description="received at or after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="received before (ISO 8601)")] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: OffsetQuery = 0,
) -> queries.IncidentFilters:
    """The listing's query parameters, as one value for the domain."""
    return queries.IncidentFilters(
        tuple(status or ()), grid, community, category, overdue, since, until, limit, offset
    )


@router.get("", dependencies=[require("incidents.read")])
def list_(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    filters: Annotated[queries.IncidentFilters, Depends(_filters)],
) -> dict[str, Any]:
    """Incidents matching the filters, newest first: total, limit, offset, items."""
    return queries.list_incidents(engine, settings, filters, grids=grid_scope(who))


@router.get("/categories", dependencies=[require("incidents.categories")])
def categories(settings: SettingsDep) -> list[dict[str, Any]]:
    """The categories and their time limits."""
    return config.categories(settings)


@router.get("/overdue", dependencies=[require("incidents.read")])
def overdue(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Supervision list (督办): open incidents past their deadline, oldest first, with workers."""
    return queries.overdue_incidents(engine, settings, limit=limit, grids=grid_scope(who))


@router.get("/stats", dependencies=[require("incidents.stats")])
def stats(
    engine: EngineDep,
    settings: SettingsDep,
    by: Annotated[str, Query(description="grid or community")] = "grid",
    since: str | None = None,
    until: str | None = None,
    grids: Annotated[
        str,
        Query(
            description="then: each incident in the grid it was routed to; today: where it "
            "happened, among today's grids (a period spanning a grid edit, re-aggregated)"
        ),
    ] = "then",
) -> dict[str, Any]:
    """Per grid or community: counts by status and category, on-time rate, overdue now."""
    return queries.incident_stats(engine, settings, by, since, until, grids=grids)


@router.get("/{ref}", dependencies=[require("incidents.read")])
def get(
    engine: EngineDep, settings: SettingsDep, who: PrincipalDep, ref: Annotated[str, Path_]
) -> dict[str, Any]:
    """One incident with its events, its grid's workers and the reporter."""
    return readable_incident(who, queries.get_incident(engine, settings, ref))


@router.patch("/{ref}", dependencies=[require("incidents.act")])
def change(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    response: Response,
    ref: Annotated[str, Path_],
    body: Annotated[
        bodies.IncidentChange,
        Body(
            description="action (locate, file, dispatch, start, report, close, reopen, cancel), "
            "actor, note; grid_code for dispatch; lon, lat, crs for locate",
            examples=[{"action": "start", "actor": "W001", "note": "到场处置"}],
        ),
    ],
    idempotency_key: Annotated[
        str | None,
        Header(description="a resend with the same key and body applies nothing again"),
    ] = None,
) -> dict[str, Any]:
    """Apply one workflow action: 409 when illegal from the current status (nothing changes);
    403 for an action the caller's role may not take.

    A resend with the same Idempotency-Key and body (a phone after a dropped connection)
    answers 200 with the incident as it is now and the header `Idempotent-Replayed: true`,
    applying nothing; the same key with another body or incident is 409.
    """
    if not may_take(who, body.action):
        raise Forbidden(f"role {who.role!r} may not {body.action!r} an incident")
    done = followup.change_incident(
        engine, settings, ref, body, idempotency_key, grids=grid_scope(who), recorded_by=who.name
    )
    if not done.applied:
        response.headers["Idempotent-Replayed"] = "true"
    return done.incident
