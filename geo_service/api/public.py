"""The residents' grid notice (网格信息公示), a public door: where an address or a point is,
its grid and community, the grid workers' public details (only the fields the city marks
public: GEO_WORKER_PUBLIC_FIELDS; phones stay private unless listed), the nearest
neighbourhood centre with its walking minutes from the life-circle figures, and how to report
a problem. Anonymous, and rate-limited per client address. It calls the same domain functions
as every other door."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from geo_service.api.deps import CrsQuery, EngineDep, ReadEngineDep, SettingsDep
from geo_service.api.limits import client_of
from geo_service.buildings.service import geocode, reverse
from geo_service.coverage.service import building_coverage_of
from geo_service.errors import InvalidInput, NotFound
from geo_service.grids.workers import public_view
from geo_service.settings import Settings

router = APIRouter(prefix="/api/v1/public", tags=["public"])
NEAR_BUILDING_M = 100.0  # a point's life-circle figures are those of a building this close

HOW_TO_REPORT = {
    "incidents": "POST /api/v1/incidents (category, description, lon/lat or address)",
    "open311": "POST /open311/v2/requests.json (Open311 GeoReport v2)",
    "categories": "GET /api/v1/incidents/categories",
}


@router.get("/grid")
async def grid_notice(
    request: Request,
    engine: ReadEngineDep,
    primary: EngineDep,
    settings: SettingsDep,
    address: Annotated[str | None, Query(max_length=200, description="your address")] = None,
    lon: Annotated[str | None, Query(max_length=64)] = None,
    lat: Annotated[str | None, Query(max_length=64)] = None,
    crs: CrsQuery = "wgs84",
) -> dict[str, Any]:
    """Your grid, community and grid workers (their public details), the nearest
    neighbourhood centre and its walking minutes, and how to report a problem; by address or
    by lon/lat. Anonymous; 429 with Retry-After beyond GEO_PUBLIC_RATE_PER_MINUTE requests a
    minute from one address."""
    request.app.state.public_limiter.take(client_of(request))
    return await run_in_threadpool(notice, engine, settings, address, lon, lat, crs, primary)


def notice(
    engine: Any,
    settings: Settings,
    address: str | None,
    lon: str | None,
    lat: str | None,
    crs: str,
    writer: Any = None,
) -> dict[str, Any]:
    """The notice of an address or a point; `writer`: the primary when `engine` reads from a
    standby (geocoding's address index is refreshed there)."""
    found_by: dict[str, Any]
    if address and (lon is not None or lat is not None):
        raise InvalidInput("give an address, or lon and lat, not both")
    if address:
        answer = geocode(engine, settings, address, 1, writer=writer)
        if not answer["candidates"]:
            raise NotFound(answer.get("message") or f"no place found for {address!r}")
        best = answer["candidates"][0]
        found_by = {k: best.get(k) for k in ("address", "match_type", "confidence")}
        lon, lat, crs = best["lon"], best["lat"], "wgs84"
    elif lon is not None and lat is not None:
        found_by = {"lon": lon, "lat": lat, "crs": crs}
    else:
        raise InvalidInput("give your address, or lon and lat")
    where = reverse(engine, settings, lon, lat, crs, NEAR_BUILDING_M, 1)
    location = where["location"]
    if not location.get("grid_code"):
        raise NotFound("that place is in no grid of the city")
    building = where["buildings"][0] if where["buildings"] else None
    walk = building_coverage_of(engine, building["code"]) if building else None
    fields = settings.grids.worker_public_fields
    return {
        "found_by": found_by,
        "lon": location["lon"],
        "lat": location["lat"],
        "grid": {"code": location["grid_code"], "name": location["grid_name"]},
        "community": {"code": location["community_code"], "name": location["community_name"]},
        "workers": [public_view(w, fields) for w in location["workers"]],
        "nearest_center": None
        if not walk or not walk.get("center_code")
        else {
            "code": walk["center_code"],
            "name": walk["center_name"],
            "walk_minutes": walk["minutes"],
            "walk_m": walk["walk_m"],
        },
        "report": HOW_TO_REPORT,
    }
