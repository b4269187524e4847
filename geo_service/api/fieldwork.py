"""Field work routes: campaigns (create, list, progress, a worker's walking order) and visits
(record, resend-safe; a follow-up visit made an incident)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response

from geo_service.api.auth import PrincipalDep, require
from geo_service.api.deps import CRS_DESCRIPTION, EngineDep, OffsetQuery, SettingsDep
from geo_service.auth.policy import Principal, grid_scope
from geo_service.db.models import CAMPAIGN_MAX_ROUNDS
from geo_service.fieldwork import campaigns, route, visits
from geo_service.fieldwork.bodies import MAX_ID, CampaignIn, VisitIn, VisitIncidentIn

router = APIRouter(prefix="/api/v1", tags=["fieldwork"])
_READ = [require("campaigns.read")]
_EDIT = [require("campaigns.edit")]
_RECORD = [require("visits.record")]
CampaignPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a campaign's id")]
VisitPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a visit's id")]
RoundQuery = Annotated[int, Query(ge=1, le=CAMPAIGN_MAX_ROUNDS, description="the round")]
CoordinateQuery = Annotated[str, Query(max_length=64, description="in crs (default WGS-84)")]
CodeQuery = Annotated[str | None, Query(max_length=64)]
_REPLAYED = "Idempotent-Replayed"

_CAMPAIGN_EXAMPLE = {
    "name": "石城社区第一轮入户排查",
    "kind": "screening",
    "scope": {"communities": ["340705001001"]},
    "target": "households",
    "rounds": 5,
    "starts": "2026-12-01",
    "due": "2026-12-31",
}
_VISIT_EXAMPLE = {
    "campaign": 1,
    "round": 1,
    "building": "B0000001",
    "households_reached": 12,
    "outcome": "visited",
    "note": "独居老人一户，已登记",
    "at": "2026-12-03T10:15:00",
    "lon": 117.8123,
    "lat": 30.9321,
}


def _mine(who: Principal) -> list[str] | None:
    """The grids a caller is held to (a grid worker's), None for everyone else."""
    return grid_scope(who)


@router.post("/campaigns", status_code=201, dependencies=_EDIT)
def create_campaign(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    body: Annotated[CampaignIn, Body(examples=[_CAMPAIGN_EXAMPLE])],
) -> dict[str, Any]:
    """A door-to-door campaign over communities or grids, in rounds, counted in buildings or
    households: its buildings are fixed now, each in its grid (the locate rule). 404 naming
    an unknown community or grid; 422 for an empty scope, rounds outside 1..20, due before
    the start."""
    return campaigns.create_campaign(engine, settings, body, created_by=who.name)


@router.get("/campaigns", dependencies=_READ)
def list_campaigns(engine: EngineDep, settings: SettingsDep, who: PrincipalDep) -> dict[str, Any]:
    """Campaigns, newest first (a grid worker: those covering their grids)."""
    return campaigns.list_campaigns(engine, settings, grids=_mine(who))


@router.get("/campaigns/{campaign}", dependencies=_READ)
def get_campaign(
    engine: EngineDep, settings: SettingsDep, who: PrincipalDep, campaign: CampaignPath
) -> dict[str, Any]:
    """One campaign: scope, rounds, period, buildings and households, the grids it covers."""
    return campaigns.get_campaign(engine, settings, campaign, grids=_mine(who))


@router.get(
    "/campaigns/{campaign}/progress",
    dependencies=_READ,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}},
)
def progress(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    campaign: CampaignPath,
    by: Literal["grid", "community", "worker"] = "grid",
    round: Annotated[
        int | None,
        Query(ge=1, le=CAMPAIGN_MAX_ROUNDS, description="one round (default: all rounds)"),
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Per grid, community or worker (a grid's figures shared among its workers): buildings
    or households in scope, done, remaining, visits, revisits, no one home, flagged; and the
    city's. A grid worker sees their grids (and the city's figures)."""
    answer = campaigns.progress(engine, settings, campaign, by=by, round_=round, grids=_mine(who))
    if format == "csv":
        return Response(
            campaigns.progress_csv(answer),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="campaign-{campaign}-{by}.csv"'},
        )
    return answer


@router.get("/campaigns/{campaign}/route", dependencies=_READ)
def walking_route(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    campaign: CampaignPath,
    round: RoundQuery,
    lon: CoordinateQuery,
    lat: CoordinateQuery,
    crs: Annotated[str | None, Query(max_length=64, description=CRS_DESCRIPTION)] = None,
    grid: Annotated[
        str | None, Query(max_length=64, description="required unless a grid worker asks")
    ] = None,
) -> dict[str, Any]:
    """The buildings of the grid not yet reached in the round, in walking order from (lon,
    lat) along the streets (nearest neighbour improved by 2-opt), with the walk in metres
    and minutes and its ratio to a lower bound of the best order."""
    return route.route(
        engine,
        settings,
        campaign,
        round,
        lon,
        lat,
        crs=crs,
        grid=grid,
        worker_grids=_mine(who),
        models=request.app.state.coverage_models,
    )


@router.post("/visits", status_code=201, dependencies=_RECORD)
def record_visit(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    response: Response,
    body: Annotated[VisitIn, Body(examples=[_VISIT_EXAMPLE])],
    idempotency_key: Annotated[
        str | None,
        Header(description="a resend with the same key and body answers the first visit"),
    ] = None,
) -> dict[str, Any]:
    """Record a visit (a grid worker: in their grids only, else 403). A resend with the same
    Idempotency-Key and body answers 201 with the first visit and `Idempotent-Replayed:
    true`; the same key with another body is 409. Stored but flagged when recorded farther
    than GEO_VISIT_MAX_DISTANCE_M from the building; a second visit of a building in a round
    is a revisit. 404: unknown campaign or building; 422: a round outside the campaign's, a
    building outside its scope, a time before the campaign or in the future (beyond
    GEO_VISIT_CLOCK_SKEW_S)."""
    answer = visits.record_visit(
        engine, settings, body, idempotency_key, recorded_by=who.name, grids=_mine(who)
    )
    if not answer.created:
        response.headers[_REPLAYED] = "true"
    return answer.body


@router.get("/visits", dependencies=_READ)
def list_visits(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    campaign: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    round: Annotated[int | None, Query(ge=1, le=CAMPAIGN_MAX_ROUNDS)] = None,
    grid: CodeQuery = None,
    building: CodeQuery = None,
    flagged: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: OffsetQuery = 0,
) -> dict[str, Any]:
    """Visits, newest first (a grid worker: in their grids)."""
    return visits.list_visits(
        engine, settings, campaign=campaign, round_=round, grid=grid, building=building,
        flagged=flagged, grids=_mine(who), limit=limit, offset=offset,
    )  # fmt: skip


@router.get("/visits/{visit}", dependencies=_READ)
def get_visit(
    engine: EngineDep, settings: SettingsDep, who: PrincipalDep, visit: VisitPath
) -> dict[str, Any]:
    """One visit."""
    return visits.get_visit(engine, settings, visit, grids=_mine(who))


@router.post("/visits/{visit}/incident", status_code=201, dependencies=_RECORD)
def visit_incident(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    response: Response,
    visit: VisitPath,
    body: Annotated[
        VisitIncidentIn,
        Body(examples=[{"category": "other", "description": "独居老人家中漏水，需物业处理"}]),
    ],
) -> dict[str, Any]:
    """A follow_up visit becomes an incident at its building, routed to the building's grid
    like any report; the visit keeps its ref. Asked again: the same incident (201 with
    `Idempotent-Replayed: true`); 409 for another outcome or another category."""
    answer = visits.visit_incident(
        engine, settings, visit, body, recorded_by=who.name, grids=_mine(who)
    )
    if not answer.created:
        response.headers[_REPLAYED] = "true"
    return answer.body
