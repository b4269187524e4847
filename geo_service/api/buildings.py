"""Building routes: forward and reverse geocoding, search by grid or proximity, one building."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from geo_service.api.deps import CrsQuery, EngineDep, ReadEngineDep, SettingsDep
from geo_service.buildings import service

router = APIRouter(prefix="/api/v1", tags=["buildings"])


class BuildingItem(BaseModel):
    """One building of a search answer, with the grid it belongs to (locate rules)."""

    code: str
    address: str
    name: str | None = None
    households: int | None = None
    lon: float
    lat: float
    grid_code: str | None = None
    grid_name: str | None = None
    community_code: str | None = None
    distance_m: float | None = Field(None, description="metres from `near`; null otherwise")
    match_type: str | None = Field(
        None, description="when the geocoder found the building (q alone): how it matched"
    )
    confidence: float | None = Field(None, description="with match_type: 0..1")


class BuildingPage(BaseModel):
    """A page of buildings, best or nearest first."""

    total: int = Field(description="buildings matching in all, over every page")
    limit: int
    offset: int
    items: list[BuildingItem]
    message: str | None = Field(
        None,
        description="present only when a text q matches no building: says so, quoting q "
        "(\"no building matches '翠湖苑'\")",
    )


@router.get("/geocode")
def geocode(
    engine: ReadEngineDep,
    primary: EngineDep,
    settings: SettingsDep,
    q: Annotated[str, Query(max_length=1000, description="address text")],
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> dict[str, Any]:
    """Forward geocoding: ranked buildings (or door/estate points) for an address text, each
    with its grid, community, workers, a confidence in [0, 1] and a match type."""
    return service.geocode(engine, settings, q, limit, writer=primary)


@router.get("/reverse")
def reverse(
    engine: ReadEngineDep,
    settings: SettingsDep,
    lon: Annotated[str, Query(max_length=64)],
    lat: Annotated[str, Query(max_length=64)],
    crs: CrsQuery = "wgs84",
    radius: Annotated[float, Query(ge=1, le=5000, description="metres (1..5000)")] = 200,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> dict[str, Any]:
    """The grid and community of a point (locate rules) and the nearest buildings."""
    return service.reverse(engine, settings, lon, lat, crs, radius, limit)


# exclude_unset: an answer carries message, match_type and confidence only when they apply.
@router.get("/buildings", response_model=BuildingPage, response_model_exclude_unset=True)
def buildings(
    engine: ReadEngineDep,
    primary: EngineDep,
    settings: SettingsDep,
    q: Annotated[
        str | None, Query(max_length=1000, description="text: 金山花园3栋, 3栋, 锦绣")
    ] = None,
    grid: Annotated[str | None, Query(max_length=64)] = None,
    near: Annotated[str | None, Query(max_length=64, description="lon,lat")] = None,
    crs: CrsQuery = "wgs84",
    radius: Annotated[float, Query(ge=1, le=5000, description="metres (1..5000), with near")] = 500,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """A page of the buildings of a grid and/or near a point (nearest first), optionally
    matching a text `q`; `q` alone searches every building of the city (address, estate,
    road, community name, building number such as 3栋), best match first. A text that matches
    nothing answers `message`."""
    return service.search(
        engine, settings, q, grid, near, crs, radius, limit, offset, writer=primary
    )


@router.get("/buildings/{code}")
def building(engine: ReadEngineDep, code: str) -> dict[str, Any]:
    """One building with its footprint, grid, community and the grid's workers."""
    return service.building(engine, code)
