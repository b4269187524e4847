"""Locate routes: one point by query, or a batch as JSON or GeoJSON."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from geo_service.api.deps import CRS_DESCRIPTION, CrsQuery, ReadEngineDep, SettingsDep, reads_of
from geo_service.crs import parse_input_crs
from geo_service.db.engine import reading
from geo_service.errors import InvalidInput, PayloadTooLarge
from geo_service.grids.locate import PointLocator, locate_points
from geo_service.settings import Settings
from geo_service.times import parse_instant

router = APIRouter(prefix="/api/v1", tags=["locate"])
AS_OF_DESCRIPTION = (
    "locate among the grids as they were at this moment (ISO 8601; no offset: the city's "
    "time zone); the workers are today's"
)


def _as_of(settings: Settings, text: str | None) -> datetime | None:
    if text is not None and len(text) > 64:
        raise InvalidInput(f"as_of is longer than 64 characters: {text[:64]!r}...")
    return parse_instant("as_of", text, ZoneInfo(settings.incidents.timezone))


def _param(query: Mapping[str, str], name: str) -> str:
    """A required query parameter of at most 64 characters."""
    value = query.get(name)
    if value is None:
        raise InvalidInput(f"query parameter {name} is required")
    if len(value) > 64:
        raise InvalidInput(f"{name} is longer than 64 characters: {value[:64]!r}...")
    return value


class LocatedWorker(BaseModel):
    """A worker of the located grid."""

    code: str
    name: str
    phone: str | None


class LocationOut(BaseModel):
    """The answer for one point."""

    id: Any = None
    status: str = Field(description="inside, boundary, ambiguous, nearest, outside or invalid")
    lon: float | None = Field(None, description="WGS-84 longitude after conversion")
    lat: float | None = None
    grid_code: str | None = None
    grid_name: str | None = None
    community_code: str | None = None
    community_name: str | None = None
    distance_m: float | None = Field(None, description="0 inside a grid; metres for nearest")
    candidates: list[str] = []
    workers: list[LocatedWorker] = []
    message: str | None = None


class BatchOut(BaseModel):
    """Answers in input order."""

    crs: str
    count: int
    results: list[LocationOut]


_ONE_POINT_PARAMETERS = [
    {"name": "lon", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 64}},
    {"name": "lat", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 64}},
    {
        "name": "crs",
        "in": "query",
        "required": False,
        "description": CRS_DESCRIPTION,
        "schema": {"type": "string", "maxLength": 64, "default": "wgs84"},
    },
    {
        "name": "as_of",
        "in": "query",
        "required": False,
        "description": AS_OF_DESCRIPTION,
        "schema": {"type": "string", "maxLength": 64},
    },
]


@router.get(
    "/locate", response_model=LocationOut, openapi_extra={"parameters": _ONE_POINT_PARAMETERS}
)
async def locate_one(request: Request) -> LocationOut:
    """The grid, community and workers of one point; 422 when the coordinates are unusable."""
    # The dispatcher's hot path, kept lean: served past FastAPI's routing and dependencies
    # (ONE_POINT_ROUTE, api/hot.py), so it takes only the request; the query parameters are
    # read (as Starlette reads them, the last of a repeated name, without its multi-dict) and
    # checked here (documented above), app state is read directly, and the connection is
    # borrowed with getconn/putconn.
    query = dict(parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True))
    lon, lat = _param(query, "lon"), _param(query, "lat")
    crs = query.get("crs", "wgs84")
    if len(crs) > 64:
        raise InvalidInput(f"crs is longer than 64 characters: {crs[:64]!r}...")
    input_crs = parse_input_crs(crs)
    as_of = query.get("as_of")
    at = None if as_of is None else _as_of(request.app.state.settings, as_of)
    found = await _locator(request).locate(lon, lat, input_crs, at)
    if found.status == "invalid":
        raise InvalidInput(found.message or "invalid coordinates")
    # The dispatcher's hot path: the dataclass is already the documented shape, so it is
    # serialised directly rather than validated again through the response model.
    return JSONResponse(found.to_dict())  # type: ignore[return-value]


def _locator(request: Request) -> PointLocator:
    """The app's one-point locator, on the pool the read-only doors read from."""
    state = request.app.state
    pool = reads_of(request).pool
    locator: PointLocator | None = getattr(state, "point_locator", None)
    if locator is None or locator.pool is not pool:
        locator = PointLocator(pool, state.settings.grids.locate_tolerance_m)
        state.point_locator = locator
    return locator


# Answered by api/hot.py (with its router's permission, given in app.py); documented here.
ONE_POINT_ROUTE = next(
    r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is locate_one
)


@router.post("/locate", response_model=BatchOut)
def locate_many(
    engine: ReadEngineDep,
    settings: SettingsDep,
    body: Annotated[
        Any,
        Body(
            description='a list of {id, lon, lat}, {"points": [...]}, or a GeoJSON '
            "FeatureCollection of Points (ids from feature.id)",
            examples=[[{"id": "r1", "lon": 117.81, "lat": 30.93}]],
        ),
    ],
    crs: CrsQuery = "wgs84",
    as_of: Annotated[str | None, Query(max_length=64, description=AS_OF_DESCRIPTION)] = None,
) -> BatchOut:
    """Locate many points in one round trip; unusable points come back `invalid`."""
    input_crs = parse_input_crs(crs)
    at = _as_of(settings, as_of)
    ids, lons, lats = _points_of(body)
    if len(ids) > settings.grids.locate_max_points:
        raise PayloadTooLarge(
            f"{len(ids)} points in one request; the limit is {settings.grids.locate_max_points}"
        )
    with reading(engine) as conn:
        found = locate_points(conn, lons, lats, input_crs, settings.grids.locate_tolerance_m, at)
    results = [LocationOut(id=i, **f.to_dict()) for i, f in zip(ids, found, strict=True)]
    return BatchOut(crs=input_crs.name, count=len(results), results=results)


def _coordinate(value: Any) -> Any:
    """JSON numbers and numeric strings pass; booleans, objects and lists become unusable."""
    return value if isinstance(value, int | float | str) and not isinstance(value, bool) else None


def _points_of(body: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """(ids, lons, lats) from any of the accepted shapes; a clear error for anything else."""
    if isinstance(body, dict) and body.get("type") == "FeatureCollection":
        features = body.get("features")
        if not isinstance(features, list):
            raise InvalidInput("FeatureCollection without a list of features")
        ids: list[Any] = []
        lons: list[Any] = []
        lats: list[Any] = []
        for n, feature in enumerate(features):
            geometry = (feature or {}).get("geometry") or {}
            coords = geometry.get("coordinates")
            if geometry.get("type") != "Point" or not isinstance(coords, list) or len(coords) < 2:
                lons.append(None)
                lats.append(None)
            else:
                lons.append(_coordinate(coords[0]))
                lats.append(_coordinate(coords[1]))
            ids.append(feature.get("id", n) if isinstance(feature, dict) else n)
        return ids, lons, lats
    if isinstance(body, dict) and "points" in body:
        body = body["points"]
    if not isinstance(body, list):
        raise InvalidInput(
            'expected a list of {id, lon, lat}, {"points": [...]} or a GeoJSON FeatureCollection'
        )
    ids, lons, lats = [], [], []
    for n, point in enumerate(body):
        if not isinstance(point, dict):
            raise InvalidInput(f"point {n} is not an object with lon and lat: {point!r:.80}")
        ids.append(point.get("id", n))
        lons.append(_coordinate(point.get("lon", point.get("lng"))))
        lats.append(_coordinate(point.get("lat")))
    return ids, lons, lats
