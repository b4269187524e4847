"""Building lookups for grid workers and dispatchers: reverse geocoding, the buildings of a
grid or near a point, one building with its grid and workers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from geo_service.buildings import store
from geo_service.crs import parse_input_crs
from geo_service.db.engine import reading
from geo_service.errors import InvalidInput, NotFound
from geo_service.grids.locate import locate_points, parse_coordinates
from geo_service.settings import Settings


def reverse(
    engine: Engine,
    settings: Settings,
    lon: Any,
    lat: Any,
    crs: str | None,
    radius_m: float,
    limit: int,
) -> dict[str, Any]:
    """Where a point is (the locate rules) and the buildings nearest to it."""
    input_crs = parse_input_crs(crs)
    with reading(engine) as conn:
        [where] = locate_points(conn, [lon], [lat], input_crs, settings.locate_tolerance_m)
        if where.status == "invalid":
            raise InvalidInput(where.message or "invalid coordinates")
        assert where.lon is not None and where.lat is not None
        buildings = store.nearest(conn, where.lon, where.lat, radius_m, limit)
    return {"location": where.to_dict(), "buildings": [_rounded(b) for b in buildings]}


def search(
    engine: Engine,
    grid: str | None,
    near: str | None,
    crs: str | None,
    radius_m: float,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """A page of buildings of a grid and/or near a point (`near` = "lon,lat")."""
    if grid is None and near is None:
        raise InvalidInput("give grid=CODE and/or near=lon,lat")
    with reading(engine) as conn:
        if grid is not None and not store.grid_exists(conn, grid):
            raise NotFound(f"unknown grid code {grid!r}")
        if near is None:
            assert grid is not None
            rows = store.in_grid(conn, grid, limit, offset)
        else:
            x, y = _point(near, crs)
            rows = store.near(conn, x, y, radius_m, grid, limit, offset)
    total = int(rows[0].pop("total")) if rows else 0
    for row in rows[1:]:
        row.pop("total", None)
    return {"total": total, "limit": limit, "offset": offset, "items": [_rounded(r) for r in rows]}


def building(engine: Engine, code: str) -> dict[str, Any]:
    """One building: address, households, footprint, grid, community and the grid's workers."""
    with reading(engine) as conn:
        row = store.one(conn, code)
    if row is None:
        raise NotFound(f"unknown building code {code!r}")
    row["workers"] = row["workers"] or []
    return row


def _point(near: str, crs: str | None) -> tuple[float, float]:
    parts = near.split(",")
    if len(parts) != 2:
        raise InvalidInput(f"near={near!r} is not lon,lat")
    x, y, reasons = parse_coordinates([parts[0]], [parts[1]], parse_input_crs(crs))
    if reasons[0]:
        raise InvalidInput(reasons[0])
    return float(x[0]), float(y[0])


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("distance_m") is not None:
        row["distance_m"] = round(row["distance_m"], 2)
    return row
