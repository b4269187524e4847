"""Coverage routes: the 15-minute life circle (figures, buildings, shapes, what-if, siting).

Every answer carries `stale`: true when centres, buildings or roads were imported (or the
coverage settings changed) since the last `geo-service coverage compute`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, TypeAdapter
from starlette.concurrency import run_in_threadpool

from geo_service.api.auth import PrincipalDep
from geo_service.api.deps import (
    CrsQuery,
    LayersDep,
    OffsetQuery,
    ReadEngineDep,
    ReadPoolDep,
    SettingsDep,
    TierQuery,
)
from geo_service.coverage import planning, service
from geo_service.coverage.store import BuildingQuery

router = APIRouter(prefix="/api/v1/coverage", tags=["coverage"])

CodeQuery = Annotated[str | None, Query(max_length=64)]
_ANSWER = TypeAdapter(dict[str, Any])


class _Answer(JSONResponse):
    """A JSON answer written in one pass by pydantic-core (the figures of every community:
    a province's what-if is half a megabyte, which FastAPI's validation then `json.dumps`
    took six times longer to write)."""

    def render(self, content: Any) -> bytes:
        return _ANSWER.dump_json(content)


_GEOJSON: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a GeoJSON FeatureCollection, with the coverage status's fields",
        "content": {"application/geo+json": {"schema": {"type": "object"}}},
    }
}


@router.get("/summary")
def summary(engine: ReadEngineDep, settings: SettingsDep) -> dict[str, Any]:
    """City-wide buildings and households within each tier, unreachable ones, isolated
    pieces of the street network, and whether the figures are stale."""
    return service.summary(engine, settings)


@router.get("/communities")
def communities(engine: ReadEngineDep, settings: SettingsDep) -> dict[str, Any]:
    """Figures per community."""
    return service.communities(engine, settings)


@router.get("/grids")
def grids(
    engine: ReadEngineDep, settings: SettingsDep, community: CodeQuery = None
) -> dict[str, Any]:
    """Figures per grid (of one community with `community=`)."""
    return service.grids(engine, settings, community)


def _building_query(
    uncovered: bool = False,
    tier: TierQuery = None,
    community: CodeQuery = None,
    grid: CodeQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: OffsetQuery = 0,
) -> BuildingQuery:
    return BuildingQuery(uncovered, tier, community, grid, limit, offset)


@router.get("/buildings")
def buildings(
    engine: ReadEngineDep,
    settings: SettingsDep,
    query: Annotated[BuildingQuery, Depends(_building_query)],
) -> dict[str, Any]:
    """Per-building walks: nearest centre, metres, minutes, tier (`uncovered=true`: the ones
    outside every tier, farthest first)."""
    return service.buildings(engine, settings, query)


@router.get("/isochrones", response_class=Response, responses=_GEOJSON)
async def isochrones(
    request: Request,
    shapes: CoverageShapesDep,
    center: CodeQuery = None,
    tier: TierQuery = None,
) -> Response:
    """GeoJSON: the area within each tier of each centre, following the streets."""
    return await shapes(request, "coverage_isochrones", {"center_code": center, "tier_min": tier})


@router.get("/tiers", response_class=Response, responses=_GEOJSON)
async def tiers(request: Request, shapes: CoverageShapesDep, tier: TierQuery = None) -> Response:
    """GeoJSON: the isochrones of all centres merged, one (multi)polygon per tier."""
    return await shapes(request, "coverage_tiers", {"tier_min": tier})


@router.get("/gaps", response_class=Response, responses=_GEOJSON)
async def gaps(request: Request, shapes: CoverageShapesDep) -> Response:
    """GeoJSON: built-up blocks outside the widest tier, with their uncovered households."""
    return await shapes(request, "coverage_gaps", {})


class _Shapes:
    """The coverage shapes, served the one way map layers are (the coverage_* layers'
    OGC items, every feature at once), with the coverage status every answer carries."""

    def __init__(
        self, engine: ReadEngineDep, settings: SettingsDep, layers: LayersDep, pool: ReadPoolDep,
        who: PrincipalDep,
    ) -> None:  # fmt: skip
        self.engine, self.settings, self.layers, self.pool, self.who = (
            engine, settings, layers, pool, who,
        )  # fmt: skip

    async def __call__(self, request: Request, layer: str, filters: dict[str, object]) -> Response:
        state = await run_in_threadpool(service.status_of, self.engine, self.settings)
        params = {k: str(v) for k, v in filters.items() if v is not None}
        params["limit"] = str(self.settings.layers.features_max_limit)
        url = str(request.url).split("?", 1)[0]
        page = await self.layers.items(self.pool, layer, params, url, self.who)
        head = json.dumps(service.state_head(state), default=str, ensure_ascii=False)
        body = page.body[:-1] + "," + head[1:]  # the status's fields after the features
        return Response(body, media_type="application/geo+json")


CoverageShapesDep = Annotated[_Shapes, Depends()]


@router.get("/components")
def components(engine: ReadEngineDep) -> list[dict[str, Any]]:
    """Connected pieces of the walking network; only piece 0 is routed on."""
    return service.components(engine)


class PlaceIn(BaseModel):
    """A point where a centre would stand (numbers, or text as people type them)."""

    model_config = ConfigDict(extra="forbid")

    lon: StrictFloat | StrictInt | StrictStr
    lat: StrictFloat | StrictInt | StrictStr


class WhatIfIn(BaseModel):
    """Centres to add and to remove; nothing is stored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"add": [{"lon": 117.81, "lat": 30.93}], "remove": ["C001"]}]
        },
    )

    add: list[PlaceIn] = Field(default_factory=list, max_length=100)
    remove: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=1000
    )
    crs: str | None = Field(None, max_length=64, description="of `add` (default wgs84)")


@router.post("/what-if", response_model=dict[str, Any], response_class=_Answer)
def what_if(
    request: Request, engine: ReadEngineDep, settings: SettingsDep, body: WhatIfIn
) -> Response:
    """Figures with centres added and/or removed, and the change per community; nothing is
    stored."""
    add = [place.model_dump() for place in body.add]
    return _Answer(
        planning.what_if(
            engine, settings, add, body.remove, body.crs, models=request.app.state.coverage_models
        )
    )


@router.get("/suggest")
def suggest(
    request: Request,
    engine: ReadEngineDep,
    settings: SettingsDep,
    k: Annotated[int, Query(description="how many new sites")] = 3,
    candidates: Annotated[
        str | None,
        Query(
            description="lon,lat;lon,lat;... (default: street nodes near uncovered buildings)",
            max_length=100_000,
        ),
    ] = None,
    crs: CrsQuery = "wgs84",
) -> dict[str, Any]:
    """k new centre sites that bring the most households within the widest tier, with the
    gain of each (existing centres kept)."""
    points = planning.parse_points(candidates, "candidates") if candidates else None
    return planning.suggest(
        engine, settings, k, points, crs, models=request.app.state.coverage_models
    )
